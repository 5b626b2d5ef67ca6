"""Event streams cannot starve the server: bounded in number (503 beyond), a maximum lifetime,
keep-alives that find clients that went away, and /api/health answering with every stream slot
taken. Runs the app on a real waitress server in this process, with jobs held open by the test."""

from __future__ import annotations

import json
import socket
import threading

import pytest
from waitress.server import create_server

from neuronscope.jobs.job import Outcome

from tests.support.jobs_support import wait_until


@pytest.fixture
def served(run_waitress):
    """``served(app, threads)``: the address of ``app`` on a waitress server with ``threads`` threads."""
    return lambda app, threads: run_waitress(create_server(app, host="127.0.0.1", port=0, threads=threads))


def held_job(app) -> tuple[str, threading.Event]:
    """A job that runs until the returned event is set."""
    release = threading.Event()

    def task(progress):
        progress(0.0, "holding")
        release.wait(timeout=60)
        return Outcome({"ok": True}, None)

    return app.extensions["neuronscope"].long_runs.jobs.submit("held", {}, task).job_id, release


def open_stream(address: str, job_id: str) -> socket.socket:
    host, port = address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"GET /api/jobs/{job_id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
    return sock


def status_of(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return int(head.split()[1])


def read_until_closed(sock: socket.socket) -> str:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data.decode()
        data += chunk


def http_get(address: str, path: str) -> tuple[int, dict]:
    import http.client

    host, port = address.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


@pytest.mark.parametrize("threads,extra", [(4, 6), (6, 10)])
def test_streams_beyond_the_limit_get_503_and_health_keeps_answering(make_app, served, threads, extra):
    app = make_app(threads=threads, max_event_streams=100, event_heartbeat_seconds=0.2)
    limit = app.extensions["neuronscope"].settings.event_stream_limit
    assert limit == threads - 2
    job_id, release = held_job(app)
    address = served(app, threads)
    streams = [open_stream(address, job_id) for _ in range(limit)]
    assert [status_of(s) for s in streams] == [200] * limit
    refused = [open_stream(address, job_id) for _ in range(extra)]
    bodies = [read_until_closed(s) for s in refused]
    assert all(" 503 " in b.split("\r\n")[0] and '"error"' in b and "Retry-After" in b for b in bodies)
    for _ in range(5):
        assert http_get(address, "/api/health")[0] == 200
    assert http_get(address, f"/api/jobs/{job_id}")[1]["status"] == "running"
    release.set()
    for sock in streams:
        assert '"status": "done"' in read_until_closed(sock)
        sock.close()
    assert wait_until(lambda: app.extensions["neuronscope"].long_runs.streams.open_count == 0)


def test_a_client_that_goes_away_frees_its_slot(make_app, served):
    app = make_app(threads=3, event_heartbeat_seconds=0.1)
    streams = app.extensions["neuronscope"].long_runs.streams
    assert streams.limit == 1
    job_id, release = held_job(app)
    try:
        address = served(app, 3)
        for _ in range(3):  # each time: take the only slot, vanish, and the slot comes back
            sock = open_stream(address, job_id)
            assert status_of(sock) == 200
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            sock.close()
            assert wait_until(lambda: streams.open_count == 0)
            assert http_get(address, "/api/health")[0] == 200
    finally:
        release.set()


def test_a_stream_ends_after_its_lifetime(make_app, served):
    app = make_app(threads=4, event_stream_seconds=0.5, event_heartbeat_seconds=0.1)
    job_id, release = held_job(app)
    try:
        address = served(app, 4)
        sock = open_stream(address, job_id)
        body = read_until_closed(sock)
        sock.close()
        assert "stream lifetime reached" in body and '"status": "running"' in body
        assert ": keep-alive" in body
    finally:
        release.set()
    assert app.extensions["neuronscope"].long_runs.streams.open_count == 0


def test_unknown_jobs_and_finished_streams_hold_no_slot(make_app):
    app = make_app(threads=3)
    client = app.test_client()
    streams = app.extensions["neuronscope"].long_runs.streams
    for _ in range(3):
        assert client.get("/api/jobs/" + "0" * 32 + "/events").status_code == 404
    job_id, release = held_job(app)
    release.set()
    assert wait_until(lambda: client.get(f"/api/jobs/{job_id}").get_json()["status"] == "done")
    for _ in range(3):
        response = client.get(f"/api/jobs/{job_id}/events")
        assert '"status": "done"' in response.get_data(as_text=True)
        response.close()
    assert streams.open_count == 0


def test_event_streams_can_be_switched_off(make_app):
    app = make_app(max_event_streams=0)
    job_id, release = held_job(app)
    release.set()
    response = app.test_client().get(f"/api/jobs/{job_id}/events")
    assert response.status_code == 503 and response.headers["Retry-After"]
