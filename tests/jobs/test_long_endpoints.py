"""The real long endpoints as jobs and through the cache: same results, real progress, clean cancellation."""

from __future__ import annotations

import json

import pytest
from tests.support.jobs_support import hold_jobs_at_step, wait_for_status

from neuronscope.analysis.hooks import hook_count
from neuronscope.api.long_running import CACHE_HEADER

TEXTS = ["Hello world, this is a test.", "The quick brown fox jumps over the lazy dog."]

# (method, path, body or query, a changed version of it)
LONG_CALLS = {
    "pruning/weight-analysis": ("GET", "/api/pruning/weight-analysis", {}, {"tolerance": 0.01}),
    "pruning/neuron-importance": (
        "POST", "/api/pruning/neuron-importance",
        {"layer_index": 1, "input_texts": TEXTS},
        {"layer_index": 1, "input_texts": TEXTS, "ablation": "mean"},
    ),
    "pruning/batch-analysis": (
        "POST", "/api/pruning/batch-analysis",
        {"pruning_candidates": [{"layer_index": 0, "neuron_index": n} for n in (3, 1, 4)], "input_texts": TEXTS, "batch_size": 2},
        {"pruning_candidates": [{"layer_index": 0, "neuron_index": n} for n in (3, 1, 5)], "input_texts": TEXTS, "batch_size": 2},
    ),
    "pruning/evaluate": (
        "POST", "/api/pruning/evaluate",
        {"texts": TEXTS},
        {"texts": TEXTS, "ablate": [{"layer_index": 0, "neuron_indices": [1, 2]}]},
    ),
    "pruning/plan": (
        "POST", "/api/pruning/plan",
        {"sparsity": 0.25, "method": "wanda", "texts": TEXTS},
        {"sparsity": 0.5, "method": "wanda", "texts": TEXTS},
    ),
}


def call(client, method: str, path: str, body: dict, *, run_async: bool = False):
    """The endpoint with ``body`` (its query for GET), as a job when ``run_async``."""
    flag = {"async": "true"} if run_async else {}
    if method == "GET":
        return client.get(path, query_string={**body, **flag})
    return client.post(path, json=body, query_string=flag)


def events(client, job: dict) -> list[dict]:
    """The job's Server-Sent Events, read until the stream ends."""
    stream = client.get(job["events"]).get_data(as_text=True)
    return [json.loads(line[len("data: "):]) for line in stream.splitlines() if line.startswith("data: ")]


@pytest.mark.parametrize("endpoint", list(LONG_CALLS))
def test_job_result_equals_the_synchronous_result_with_progress_to_one(make_app, model_name, endpoint):
    method, path, body, _ = LONG_CALLS[endpoint]
    app = make_app(model_name, cache_entries=0)
    client = app.test_client()
    submitted = call(client, method, path, body, run_async=True)
    assert submitted.status_code == 202, submitted.get_json()
    views = events(client, submitted.get_json())
    progress = [view["progress"] for view in views]
    assert progress == sorted(progress) and progress[-1] == 1.0 and views[-1]["status"] == "done"
    synchronous = call(client, method, path, body)
    assert synchronous.status_code == 200 and views[-1]["result"] == synchronous.get_json()
    assert views[-1]["model_name"] == model_name
    via_jobs = client.post("/api/jobs", json={"endpoint": endpoint, "body": body})
    assert wait_for_status(client, via_jobs.get_json()["job_id"], {"done"})["result"] == synchronous.get_json()
    assert hook_count(app.extensions["neuronscope"].manager.ensure_loaded().model) == 0


@pytest.mark.parametrize("endpoint", list(LONG_CALLS))
def test_repeat_hits_the_cache_and_a_changed_parameter_misses(make_app, endpoint):
    method, path, body, changed = LONG_CALLS[endpoint]
    client = make_app().test_client()
    first = call(client, method, path, body)
    repeat = call(client, method, path, body)
    assert (first.headers[CACHE_HEADER], repeat.headers[CACHE_HEADER]) == ("miss", "hit")
    assert repeat.get_json() == {**first.get_json(), "cached": True}
    other = call(client, method, path, changed)
    assert other.headers[CACHE_HEADER] == "miss" and other.get_json() != first.get_json()


@pytest.mark.parametrize("endpoint, body", [
    ("pruning/neuron-importance", {"layer_index": 1}),
    ("pruning/neuron-importance", {"layer_index": 1, "input_texts": TEXTS, "method": "guess"}),
    ("pruning/batch-analysis", {"pruning_candidates": [{"layer_index": 0}], "input_texts": TEXTS}),
    ("pruning/weight-analysis", {"tolerance": -1}),
    ("pruning/plan", {"sparsity": 0.99, "method": "magnitude"}),
    ("pruning/plan", {"sparsity": 0.2, "method": "guess"}),
    ("pruning/evaluate", {"ablate": [{"layer_index": 0, "neuron_indices": [-1]}]}),
    ("pruning/evaluate", {"texts": TEXTS, "use_samples": True}),
    ("pruning/apply", {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "../escape"}),
    ("pruning/apply", {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "gpt2"}),
    ("activations/corpus", {"texts": TEXTS, "use_samples": True}),
])
def test_bad_bodies_are_refused_before_queueing(make_app, endpoint, body):
    client = make_app().test_client()
    assert client.post("/api/jobs", json={"endpoint": endpoint, "body": body}).status_code == 400
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_model_checks_fail_the_job_with_the_synchronous_error(make_app):
    client = make_app().test_client()
    body = {"layer_index": 7, "input_texts": TEXTS}
    job = wait_for_status(client, client.post("/api/pruning/neuron-importance?async=true", json=body).get_json()["job_id"], {"failed"})
    synchronous = client.post("/api/pruning/neuron-importance", json=body)
    assert job["error"] == {**synchronous.get_json(), "status": synchronous.status_code} and synchronous.status_code == 400


def test_cancelling_a_running_neuron_importance_job_leaves_no_hook(make_app, monkeypatch):
    """The job is held inside its second progress step (mid-sweep), cancelled there, then let go."""
    held = hold_jobs_at_step(monkeypatch, 2)
    app = make_app(cache_entries=0)
    client = app.test_client()
    body = {"layer_index": 0, "input_texts": TEXTS * 4}
    before = client.post("/api/pruning/neuron-importance", json=body).get_json()
    job_id = client.post("/api/pruning/neuron-importance?async=true", json=body).get_json()["job_id"]
    assert held.paused.wait(timeout=20)
    assert client.delete(f"/api/jobs/{job_id}").get_json()["cancel_requested"] is True
    held.resume.set()
    job = wait_for_status(client, job_id, {"cancelled"})
    assert len(held.steps) == 2 and job["progress"] < 1.0 and "result" not in job
    assert hook_count(app.extensions["neuronscope"].manager.ensure_loaded().model) == 0
    assert client.post("/api/pruning/neuron-importance", json=body).get_json() == before


def test_corpus_indexing_as_a_job_builds_the_same_index(models_dir, tmp_path):
    from tests.support.settings import make_settings

    from neuronscope import create_app

    body = {"texts": TEXTS * 3 + ["One two three four five six seven eight nine ten."], "batch_size": 3}
    clients = [create_app(make_settings(tmp_path / name, models_dir, "tiny-llama")).test_client() for name in "ab"]
    submitted = clients[0].post("/api/activations/corpus?async=true", json=body)
    assert submitted.status_code == 202
    views = events(clients[0], submitted.get_json())
    assert [v["progress"] for v in views] == sorted(v["progress"] for v in views) and views[-1]["status"] == "done"
    synchronous = clients[1].post("/api/activations/corpus", json=body)
    assert synchronous.status_code == 200 and CACHE_HEADER not in synchronous.headers
    timing = {"seconds", "tokens_per_second", "created_at"}
    strip = lambda result: {k: v for k, v in result.items() if k not in timing}  # noqa: E731
    assert strip(views[-1]["result"]) == strip(synchronous.get_json())
    query = {"layer_index": 1, "neuron_index": 5, "top_k": 5}
    answers = [strip(client.post("/api/queries/neuron", json=query).get_json()) for client in clients]
    assert answers[0] == answers[1] and answers[0]["count"] == 5


def test_samples_are_part_of_the_cache_key(make_app):
    client = make_app().test_client()
    body = {"sparsity": 0.25, "method": "wanda", "use_samples": True}
    first = client.post("/api/pruning/plan", json=body)
    assert client.post("/api/pruning/plan", json=body).headers[CACHE_HEADER] == "hit"
    assert client.post("/api/samples", json={"prompt": "A new calibration sample for the plan."}).status_code == 201
    after = client.post("/api/pruning/plan", json=body)
    assert after.headers[CACHE_HEADER] == "miss" and after.get_json()["calibration"] != first.get_json()["calibration"]


def test_apply_as_a_job_saves_the_same_model_as_the_synchronous_call(make_app):
    app = make_app("tiny-llama")
    client = app.test_client()
    neurons = [{"layer_index": 0, "neuron_indices": [1, 5, 9]}, {"layer_index": 1, "neuron_indices": [2]}]
    submitted = client.post("/api/pruning/apply?async=true", json={"neurons": neurons, "output_name": "pruned-job", "texts": TEXTS})
    assert submitted.status_code == 202
    job = wait_for_status(client, submitted.get_json()["job_id"], {"done"})
    synchronous = client.post("/api/pruning/apply", json={"neurons": neurons, "output_name": "pruned-sync", "texts": TEXTS})
    assert synchronous.status_code == 201 and CACHE_HEADER not in synchronous.headers
    named = {"output_name", "location", "switch_with", "files"}
    assert {k: v for k, v in job["result"].items() if k not in named} == {
        k: v for k, v in synchronous.get_json().items() if k not in named
    }
    models_dir = app.extensions["neuronscope"].settings.resolved_models_dir
    saved = [(models_dir / name / "model.safetensors").read_bytes() for name in ("pruned-job", "pruned-sync")]
    assert saved[0] == saved[1]
    again = client.post("/api/pruning/apply?async=true", json={"neurons": neurons, "output_name": "pruned-job"})
    assert wait_for_status(client, again.get_json()["job_id"], {"failed"})["error"]["status"] == 400
