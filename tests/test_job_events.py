"""Server-Sent Events of a job's progress, through a real waitress server on a free localhost port."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
from jobs_support import GATED, WEIGHT_NORMS, Calls, Gate, add_test_views, gated_operation, weight_norms_operation
from waitress import wasyncore
from waitress.server import create_server

from neuronscope.api.long_running import LONG_OPERATIONS


@pytest.fixture
def live(make_app, monkeypatch):
    """``(base_url, gate)`` of the app served by waitress in a background thread."""
    gate = Gate()
    monkeypatch.setitem(LONG_OPERATIONS, WEIGHT_NORMS, weight_norms_operation(Calls()))
    monkeypatch.setitem(LONG_OPERATIONS, GATED, gated_operation(gate))
    app = make_app(cache_entries=0)
    add_test_views(app)
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.effective_port}", gate
    gate.open_all()
    server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))  # closed inside the server's loop
    thread.join(timeout=10)
    server.task_dispatcher.shutdown()
    assert not thread.is_alive()


def post_json(url: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, dict(response.headers), json.loads(response.read())


def read_events(url: str, on_event=None, timeout: float = 30.0) -> list[dict]:
    """Every ``data:`` event until the server ends the stream."""
    events = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("data: "):
                events.append(json.loads(line[len("data: "):]))
                if on_event is not None:
                    on_event(events[-1])
            else:
                assert line == "" or line.startswith(":"), line
    return events


def test_events_stream_progress_monotonically_to_done_and_end(live):
    base, gate = live
    status, headers, body = post_json(f"{base}/api/{GATED}?async=true", {})
    assert status == 202 and headers["Location"] == body["location"]

    def release_next_step(event):
        if event["status"] == "running" and event["step"].startswith("step "):
            gate.release[int(event["step"].split()[1])].set()

    events = read_events(base + body["events"], on_event=release_next_step)
    progress = [event["progress"] for event in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert len(set(progress)) >= 3  # several intermediate steps were streamed
    assert events[-1]["status"] == "done" and events[-1]["result"]["steps"] == gate.steps
    assert all(event["job_id"] == body["job_id"] for event in events)


def test_events_of_a_finished_job_give_its_final_state_and_end(live):
    base, _ = live
    _, _, body = post_json(f"{base}/api/{WEIGHT_NORMS}?async=true", {"layers": [0, 1]})
    events = read_events(base + body["events"])
    assert events[-1]["status"] == "done"
    again = read_events(base + body["events"])
    assert len(again) == 1 and again[0] == events[-1]


def test_events_end_when_the_job_is_cancelled(live):
    base, gate = live
    _, _, body = post_json(f"{base}/api/{GATED}?async=true", {})

    def cancel_at_first_step(event):
        if event["step"] == "step 0":
            request = urllib.request.Request(base + body["location"], method="DELETE")
            urllib.request.urlopen(request, timeout=10).close()
            gate.release[0].set()

    events = read_events(base + body["events"], on_event=cancel_at_first_step)
    assert events[-1]["status"] == "cancelled" and events[-1]["progress"] < 1.0


def test_events_of_an_unknown_job_are_404(live):
    base, _ = live
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{base}/api/jobs/0123456789abcdef0123456789abcdef/events", timeout=10)
    assert info.value.code == 404
