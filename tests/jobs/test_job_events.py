"""Server-Sent Events of a job's progress: through run_api_server.py (waitress) on a free localhost
port with a tiny model, and in-process for a job held at its step boundaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.jobs_support import GATED
from tests.support.ports import free_port


ROOT = Path(__file__).parents[2]
TEXTS = ["Hello world, this is a test.", "The quick brown fox jumps over the lazy dog.", "One two three four five."]


@pytest.fixture(scope="module")
def live(models_dir, tmp_path_factory):
    """Base URL of run_api_server.py serving tiny-llama (cache off, so every call computes)."""
    folder = tmp_path_factory.mktemp("sse")
    port = free_port()
    env = {**os.environ, "PORT": str(port), "NEURONSCOPE_DATA_DIR": str(folder / "data"),
           "NEURONSCOPE_MODELS_DIR": str(models_dir), "NEURONSCOPE_MODEL": "tiny-llama",
           "NEURONSCOPE_OFFLINE": "1", "NEURONSCOPE_CACHE_ENTRIES": "0", "NEURONSCOPE_INDEX_DEFAULT_CORPUS": "0"}
    env.pop("HOST", None)
    with open(folder / "server.log", "w") as log:
        proc = subprocess.Popen([sys.executable, str(ROOT / "run_api_server.py")], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/api/health", timeout=5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail((folder / "server.log").read_text())
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(timeout=10)


def post_json(url: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, dict(response.headers), json.loads(response.read())


def parse_events(lines) -> list[dict]:
    """The ``data:`` events of a text/event-stream; anything else must be blank or a comment."""
    events = []
    for line in lines:
        if line.startswith("data: "):
            events.append(json.loads(line[len("data: "):]))
        else:
            assert line == "" or line.startswith(":"), line
    return events


def read_events(url: str) -> list[dict]:
    """Every event until the server ends the stream (bounded by the socket timeout)."""
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        return parse_events(raw.decode("utf-8").rstrip("\n") for raw in response)


def test_events_stream_progress_monotonically_to_done_and_end(live):
    body = {"layer_index": 1, "input_texts": TEXTS}
    status, headers, accepted = post_json(f"{live}/api/pruning/neuron-importance?async=true", body)
    assert status == 202 and headers["Location"] == accepted["location"]
    events = read_events(live + accepted["events"])
    progress = [event["progress"] for event in events]
    assert progress == sorted(progress) and progress[-1] == 1.0 and events[-1]["status"] == "done"
    assert all(event["job_id"] == accepted["job_id"] for event in events)
    assert events[-1]["result"] == post_json(f"{live}/api/pruning/neuron-importance", body)[2]


def test_events_of_a_finished_job_give_its_final_state_and_end(live):
    _, _, accepted = post_json(f"{live}/api/jobs", {"endpoint": "pruning/weight-analysis", "body": {}})
    events = read_events(live + accepted["events"])
    assert events[-1]["status"] == "done"
    again = read_events(live + accepted["events"])
    assert len(again) == 1 and again[0] == events[-1]


def test_events_of_an_unknown_job_are_404(live):
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{live}/api/jobs/0123456789abcdef0123456789abcdef/events", timeout=10)
    assert info.value.code == 404
    info.value.close()


def stream(client, path: str, on_event) -> list[dict]:
    """Consume the event stream in-process as it is produced, calling ``on_event`` on each event."""
    response = client.get(path, buffered=False)
    events = []
    for chunk in response.response:
        for event in parse_events(chunk.decode("utf-8").splitlines()):
            events.append(event)
            on_event(event)
    response.close()
    return events


def test_each_step_is_streamed_as_it_happens(make_app, gate):
    client = make_app().test_client()
    accepted = client.post("/api/jobs", json={"endpoint": GATED, "body": {}}).get_json()

    def release_the_step_just_reported(event):
        if event["status"] == "running" and event["step"].startswith("step "):
            gate.release[int(event["step"].split()[1])].set()

    events = stream(client, accepted["events"], release_the_step_just_reported)
    steps = [event["step"] for event in events]
    assert [f"step {i}" for i in range(gate.steps)] == [s for s in steps if s.startswith("step ")]
    assert [e["progress"] for e in events] == sorted(e["progress"] for e in events) and events[-1]["progress"] == 1.0


def test_events_end_when_the_job_is_cancelled(make_app, gate):
    client = make_app().test_client()
    accepted = client.post("/api/jobs", json={"endpoint": GATED, "body": {}}).get_json()

    def cancel_at_first_step(event):
        if event["step"] == "step 0" and not event["cancel_requested"]:
            assert client.delete(accepted["location"]).status_code == 200
            gate.release[0].set()

    events = stream(client, accepted["events"], cancel_at_first_step)
    assert events[-1]["status"] == "cancelled" and events[-1]["progress"] < 1.0
    assert gate.completed == [0]
