"""The Ray executor on a local Ray instance with 2 workers: same answers as the local executor,
a killed worker's chunks retried, cancellation of a job's Ray tasks."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest
import ray
import torch

from neuronscope import create_app
from neuronscope.jobs.job import JobCancelled

from tests.support.settings import make_settings
from tests.support.jobs_support import wait_for_status
from tests.support.sweep_support import TEXTS, assert_same_index, assert_same_scores, index_contents

CHUNK_NEURONS = 4


@pytest.fixture(scope="module")
def ray_app(models_dir):
    """An app on the Ray executor (2 workers of 1 CPU); Ray's session files stay in its data dir,
    a short path because Ray's socket paths are limited to 107 bytes."""
    data = Path(tempfile.mkdtemp(prefix="nsray-"))
    settings = make_settings(data, models_dir, "tiny-llama", executor="ray", ray_workers=2, chunk_neurons=CHUNK_NEURONS)
    app = create_app(settings)
    yield app
    app.extensions["neuronscope"].executor.shutdown()
    ray.shutdown()
    shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def ray_services(ray_app):
    services = ray_app.extensions["neuronscope"]
    services.manager.switch("tiny-llama")
    return services


def importance(client, **body) -> dict:
    response = client.post("/api/pruning/neuron-importance", json={"input_texts": TEXTS, **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("model, ablation", [("tiny-llama", "zero"), ("tiny-gpt2", "mean")])
def test_whole_model_sweep_on_ray_equals_local(ray_app, make_app, model, ablation):
    ray_app.extensions["neuronscope"].manager.switch(model)
    on_ray = importance(ray_app.test_client(), layer_indices="all", ablation=ablation)
    local = importance(make_app(model, chunk_neurons=CHUNK_NEURONS).test_client(), layer_indices="all", ablation=ablation)
    assert_same_scores(on_ray["importance_scores"], local["importance_scores"], atol=1e-6)
    assert on_ray["critical_neurons"] == local["critical_neurons"]
    stats = on_ray["executor"]
    assert stats["executor"] == "ray" and stats["workers"] == 2
    assert stats["chunks"] == stats["chunks_done"] == local["executor"]["chunks"] > 2


def test_corpus_indexing_on_ray_equals_local(ray_services, models_dir, tmp_path):
    texts = [*TEXTS, "A cat sat on the mat.", "Rome, Paris and Madrid are cities.", "Ten, nine, eight."]
    local = create_app(make_settings(tmp_path / "local", models_dir, "tiny-llama", chunk_texts=2)).extensions["neuronscope"]
    results = [svc.activations.index_corpus(texts, batch_size=2) for svc in (ray_services, local)]
    assert results[0]["executor"]["executor"] == "ray" and results[0]["texts_indexed"] == len(texts)
    with local.manager.use() as lm:
        sizes = [lm.adapter.d_mlp(layer) for layer in range(lm.adapter.n_layers)]
    assert_same_index(
        index_contents(ray_services.activations.index, "tiny-llama", sizes),
        index_contents(local.activations.index, "tiny-llama", sizes),
    )


def test_a_killed_worker_has_its_chunks_retried(ray_services, make_app):
    """Worker 0 is killed (SIGKILL through Ray) after the first chunk finishes, while chunks are in
    flight on it: they run again on the other worker or the replacement, and the sweep is unchanged."""
    executor = ray_services.executor
    killed = []

    def kill_worker_zero(fraction: float, _step: str) -> None:
        if fraction > 0 and not killed:
            killed.append(executor.workers[0].actor)
            ray.kill(killed[0])

    result = ray_services.pruning.neuron_importance("all", TEXTS * 6, progress=kill_worker_zero)
    stats = result["executor"]
    assert killed and stats["retried_chunks"] >= 1 and stats["chunks_done"] == stats["chunks"]
    assert all(worker.actor is not killed[0] for worker in executor.workers) and len(executor.workers) == 2
    assert len(set(ray.get([worker.actor.pid.remote() for worker in executor.workers], timeout=60))) == 2
    local = make_app("tiny-llama", chunk_neurons=CHUNK_NEURONS).extensions["neuronscope"]
    reference = local.pruning.neuron_importance("all", TEXTS * 6)["importance_scores"]
    assert_same_scores(result["importance_scores"], reference, atol=1e-6)


def test_cancelling_stops_the_ray_tasks_and_the_pool_stays_usable(ray_services):
    """A cancel raised from the progress callback (as a job's is) cancels the tasks in flight."""
    executor = ray_services.executor

    def cancel_after_first_chunk(fraction: float, _step: str) -> None:
        if fraction > 0:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        ray_services.pruning.neuron_importance("all", TEXTS * 8, progress=cancel_after_first_chunk)
    stats = executor.last_stats
    assert stats.cancelled_tasks >= 1 and stats.chunks_done < stats.chunks
    started = time.monotonic()
    assert len(ray.get([worker.actor.pid.remote() for worker in executor.workers], timeout=30)) == 2
    assert time.monotonic() - started < 30
    again = ray_services.pruning.neuron_importance(0, TEXTS[:1])
    assert again["executor"]["chunks_done"] == again["executor"]["chunks"]


def test_cancelling_a_job_cancels_its_ray_tasks(ray_app, ray_services):
    client = ray_app.test_client()
    body = {"layer_indices": "all", "input_texts": TEXTS * 16}
    job = client.post("/api/pruning/neuron-importance?async=true", json=body).get_json()
    deadline = time.monotonic() + 60
    while client.get(f"/api/jobs/{job['job_id']}").get_json()["progress"] == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.delete(f"/api/jobs/{job['job_id']}").status_code == 200
    final = wait_for_status(client, job["job_id"], {"cancelled", "done", "failed"}, timeout=60)
    assert final["status"] == "cancelled"
    stats = ray_services.executor.last_stats
    assert stats.cancelled_tasks >= 1 and stats.chunks_done < stats.chunks


def test_workers_with_other_weights_than_the_server_are_refused(ray_app):
    """The server's copy changed in memory (so its fingerprint differs from the files the actors
    load): the pool is refused with 503, not used to compute wrong answers."""
    services = ray_app.extensions["neuronscope"]
    lm = services.manager.switch("tiny-neox")
    with torch.no_grad():
        for parameter in lm.model.parameters():
            parameter.mul_(1.5)
    response = ray_app.test_client().post(
        "/api/pruning/neuron-importance", json={"layer_index": 0, "input_texts": TEXTS[:1]}
    )
    assert response.status_code == 503
    assert "other weights" in response.get_json()["details"]
    assert services.executor.workers == []


@pytest.mark.parametrize(
    "resources, overrides, expected",
    [
        ({"CPU": 32, "GPU": 8}, {}, (8, 1)),
        ({"CPU": 32, "GPU": 8}, {"ray_gpus_per_worker": 2}, (4, 2)),
        ({"CPU": 32, "GPU": 8}, {"ray_workers": 3}, (3, 1)),
        ({"CPU": 32, "GPU": 2}, {"ray_workers": 3}, (3, 0)),
        ({"CPU": 8}, {"ray_cpus_per_worker": 2}, (4, 0)),
        ({"CPU": 1}, {"ray_cpus_per_worker": 2}, (1, 0)),
    ],
)
def test_pool_size_follows_the_cluster(monkeypatch, tmp_path, resources, overrides, expected):
    """One actor per GPU (or per GPUs-per-worker), else per CPUs-per-worker; GPUs only when enough."""
    from neuronscope.executors.ray_workers import WorkerPool

    monkeypatch.setattr(ray, "cluster_resources", lambda: resources)
    pool = WorkerPool(make_settings(tmp_path, tmp_path, executor="ray", **overrides))
    assert pool.size() == expected
