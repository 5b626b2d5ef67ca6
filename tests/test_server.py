"""run_api_server.py on the real WSGI server (waitress), with a tiny model."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.ports import free_port

ROOT = Path(__file__).parent.parent


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, dict(response.headers), json.loads(response.read())


@pytest.fixture
def server(models_dir, tmp_path, request):
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NEURONSCOPE_DATA_DIR": str(tmp_path / "data"),
           "NEURONSCOPE_MODELS_DIR": str(models_dir), "NEURONSCOPE_MODEL": "tiny-llama", "NEURONSCOPE_OFFLINE": "1",
           "NEURONSCOPE_INDEX_DEFAULT_CORPUS": "0"}
    env.pop("HOST", None)
    proc = subprocess.Popen([sys.executable, str(ROOT / "run_api_server.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    request.node.server_process = proc
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            get_json(base + "/api/health")
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(proc.stdout.read())
            time.sleep(0.2)
    yield base
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=60)


def test_server_serves_with_model_preloaded_on_localhost(server):
    status, headers, body = get_json(server + "/api/health")
    assert status == 200 and body["model_name"] == "tiny-llama" and body["model_ready"] is True
    assert headers["Server"] == "NeuronScope"
    assert server.startswith("http://127.0.0.1:")


def test_server_errors_are_json(server):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(server + "/api/nope", timeout=5)
    assert info.value.code == 404
    assert set(json.loads(info.value.read())) == {"error", "details"}


def post_json(url: str, body: dict) -> dict:
    data = json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_sigterm_cancels_the_queued_and_running_jobs_and_records_them(server, request, tmp_path):
    body = {"endpoint": "pruning/sweep", "body": {"methods": ["wanda", "activation", "taylor", "obs"],
                                                  "sparsities": [0.1, 0.2, 0.3, 0.4, 0.5], "compensations": ["none", "bias", "reconstruct"]}}
    jobs = [post_json(server + "/api/jobs", {**body, "body": {**body["body"], "seed": seed}})["job_id"] for seed in range(8)]
    proc = request.node.server_process
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    statuses = [json.loads((tmp_path / "data" / "jobs" / f"{job}.json").read_text())["status"] for job in jobs]
    assert set(statuses) <= {"done", "cancelled"} and "cancelled" in statuses


def test_help_documents_options():
    out = subprocess.run([sys.executable, str(ROOT / "run_api_server.py"), "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for flag in ("--host", "--port", "--model", "--device", "--data-dir"):
        assert flag in out.stdout
    from dataclasses import fields

    from neuronscope.config import Settings

    for spec in fields(Settings):
        for var in spec.metadata.get("env", ()):
            assert var in out.stdout


def test_bad_configuration_stops_the_server_with_a_message_not_a_traceback(tmp_path):
    env = {**os.environ, "NEURONSCOPE_EXECUTOR": "dask", "NEURONSCOPE_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, str(ROOT / "run_api_server.py")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2
    assert "NEURONSCOPE_EXECUTOR must be local or ray" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize(
    "what,payload",
    [
        ("body", {"body": b'{"prompt": "' + b"a" * 300_000 + b'"}'}),
        ("header", {"headers": {"X-Padding": "p" * 40_000}}),
        ("query", {"path": "/api/samples?x=" + "q" * 40_000}),
        ("body beyond waitress", {"body": b"[" + b"1," * 300_000 + b"1]"}),
        ("headers beyond waitress", {"headers": {f"X-H{i}": "h" * 8_000 for i in range(12)}}),
    ],
)
def test_oversized_requests_get_json_from_the_app_not_waitress_text(make_app, run_waitress, what, payload):
    """The app's limits sit below waitress's, so oversized bodies and headers are refused in JSON;
    beyond waitress's limits the client still reads the answer (the server closes gracefully,
    reading and dropping the rest, instead of resetting the connection)."""
    import http.client

    from run_api_server import make_server, waitress_options

    app = make_app(max_request_bytes=100_000, max_header_bytes=16_384)
    settings = app.extensions["neuronscope"].settings
    options = waitress_options(settings)
    assert options["max_request_body_size"] > 100_000 and options["max_request_header_size"] > 16_384
    host, port = run_waitress(make_server(app, settings, host="127.0.0.1", port=0)).split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    body = payload.get("body", b"")
    conn.putrequest("POST" if body else "GET", payload.get("path", "/api/samples"))
    for name, value in {"Content-Type": "application/json", **payload.get("headers", {})}.items():
        conn.putheader(name, value)
    if body:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    conn.send(body)
    response = conn.getresponse()
    assert response.status in (400, 413, 431)
    assert response.getheader("Content-Type").startswith("application/json")
    assert set(json.loads(response.read())) == {"error", "details"}
    conn.close()
