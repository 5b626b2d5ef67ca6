"""Background jobs: results, progress, cancellation, ordering, limits, files, and the model lock."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from tests.support.jobs_support import GATED, WEIGHT_NORMS, add_test_views, numpy_norms, wait_for_status

from neuronscope.analysis.hooks import hook_count
from neuronscope.jobs.job import RUNNING, Job


@pytest.fixture
def jobs_app(make_app, calls, gate):
    def factory(**settings):
        app = make_app(**settings)
        add_test_views(app)
        return app

    return factory


def lm_of(app):
    return app.extensions["neuronscope"].manager.ensure_loaded()


def test_job_result_equals_synchronous_result(jobs_app, calls):
    app = jobs_app(cache_entries=0)
    client = app.test_client()
    body = {"layers": [0, 1], "order": 2}
    submitted = client.post(f"/api/{WEIGHT_NORMS}?async=true", json=body)
    assert submitted.status_code == 202
    job_id = submitted.get_json()["job_id"]
    assert submitted.headers["Location"] == f"/api/jobs/{job_id}"
    job = wait_for_status(client, job_id, {"done"})
    sync = client.post(f"/api/{WEIGHT_NORMS}", json=body)
    assert sync.status_code == 200 and calls.count == 2
    assert job["result"] == sync.get_json()
    assert job["progress"] == 1.0 and job["eta_seconds"] == 0.0 and job["model_name"] == "tiny-gpt2"
    assert job["params"] == body and job["endpoint"] == WEIGHT_NORMS
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    for layer in (0, 1):
        np.testing.assert_allclose(job["result"]["norms"][str(layer)], numpy_norms(lm_of(app), layer, 2), rtol=1e-6)


def test_post_jobs_dispatches_to_the_same_operation(jobs_app):
    client = jobs_app(cache_entries=0).test_client()
    submitted = client.post("/api/jobs", json={"endpoint": WEIGHT_NORMS, "body": {"layers": [1], "order": 1}})
    assert submitted.status_code == 202 and "Location" in submitted.headers
    job = wait_for_status(client, submitted.get_json()["job_id"], {"done"})
    assert job["result"] == client.post(f"/api/{WEIGHT_NORMS}", json={"layers": [1], "order": 1}).get_json()


def test_unknown_operation_is_404(jobs_app):
    client = jobs_app().test_client()
    response = client.post("/api/jobs", json={"endpoint": "pruning/nope", "body": {}})
    assert response.status_code == 404 and WEIGHT_NORMS in response.get_json()["details"]
    assert client.get("/api/jobs").get_json()["jobs"] == []


@pytest.mark.parametrize("payload", [
    {"endpoint": WEIGHT_NORMS, "body": {"layers": "all"}},
    {"endpoint": WEIGHT_NORMS, "body": {"layers": [0], "order": 9}},
    {"endpoint": WEIGHT_NORMS, "body": []},
    {"body": {"layers": [0]}},
])
def test_bad_job_requests_get_400_and_queue_nothing(jobs_app, payload):
    client = jobs_app().test_client()
    response = client.post("/api/jobs", json=payload)
    assert response.status_code == 400 and set(response.get_json()) == {"error", "details"}
    assert client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [0], "order": 0}).status_code == 400
    assert client.get("/api/jobs").get_json()["jobs"] == []


def test_bad_async_flag_is_400(jobs_app):
    response = jobs_app().test_client().post(f"/api/{WEIGHT_NORMS}?async=maybe", json={"layers": [0]})
    assert response.status_code == 400


def test_error_during_a_job_marks_it_failed_with_the_4xx_error(jobs_app):
    app = jobs_app()
    client = app.test_client()
    job_id = client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [0, 7]}).get_json()["job_id"]
    job = wait_for_status(client, job_id, {"failed"})
    assert job["error"]["status"] == 400 and "out of range" in job["error"]["details"]
    assert "result" not in job and job["progress"] < 1.0
    assert job["model_name"] == lm_of(app).name
    assert hook_count(lm_of(app).model) == 0


def test_unknown_jobs_are_404(jobs_app):
    client = jobs_app().test_client()
    for path in ("/api/jobs/0123456789abcdef0123456789abcdef", "/api/jobs/..%2F..%2Fetc", "/api/jobs/nope/events"):
        response = client.get(path)
        assert response.status_code == 404 and set(response.get_json()) == {"error", "details"}
    assert client.delete("/api/jobs/0123456789abcdef0123456789abcdef").status_code == 404


def test_cancel_running_job_stops_at_next_step_and_leaves_no_hook(jobs_app, gate):
    app = jobs_app()
    client = app.test_client()
    model = lm_of(app).model
    job_id = client.post(f"/api/{GATED}?async=true", json={}).get_json()["job_id"]
    gate.release[0].set()
    assert gate.reached[1].wait(timeout=20)
    assert hook_count(model) == 1  # the job's ablation hook is in place while it runs
    cancelling = client.delete(f"/api/jobs/{job_id}")
    assert cancelling.status_code == 200 and cancelling.get_json()["cancel_requested"] is True
    gate.release[1].set()
    job = wait_for_status(client, job_id, {"cancelled"})
    assert gate.completed == [0, 1]
    assert not gate.reached[2].is_set()
    assert hook_count(model) == 0 and "result" not in job
    assert job["model_name"] == lm_of(app).name
    assert client.delete(f"/api/jobs/{job_id}").status_code == 409


def test_shutdown_cancels_queued_and_running_jobs_and_a_restart_reads_them(jobs_app, gate, calls, make_app):
    app = jobs_app(cache_entries=0)
    client = app.test_client()
    running = client.post(f"/api/{GATED}?async=true", json={}).get_json()["job_id"]
    queued = client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [0]}).get_json()["job_id"]
    assert gate.reached[0].wait(timeout=20)
    runner = app.extensions["neuronscope"].long_runs.jobs
    stopping = threading.Thread(target=runner.shutdown, args=(30,))
    stopping.start()
    assert client.get(f"/api/jobs/{queued}").get_json()["status"] == "cancelled"
    gate.release[0].set()
    stopping.join(timeout=30)
    assert not stopping.is_alive() and calls.count == 0 and hook_count(lm_of(app).model) == 0
    assert gate.completed == [0] and not gate.reached[1].is_set()
    restarted = make_app().test_client()
    assert {restarted.get(f"/api/jobs/{j}").get_json()["status"] for j in (running, queued)} == {"cancelled"}
    assert runner.shutdown(1) is True


def test_cancelled_model_is_clean_for_the_next_analysis(jobs_app, gate, calls):
    app = jobs_app(cache_entries=0)
    client = app.test_client()
    before = client.post(f"/api/{WEIGHT_NORMS}", json={"layers": [0]}).get_json()
    job_id = client.post(f"/api/{GATED}?async=true", json={}).get_json()["job_id"]
    assert gate.reached[0].wait(timeout=20)
    client.delete(f"/api/jobs/{job_id}")
    gate.open_all()
    wait_for_status(client, job_id, {"cancelled"})
    assert client.post(f"/api/{WEIGHT_NORMS}", json={"layers": [0]}).get_json() == before


def test_jobs_run_one_at_a_time_in_submission_order(jobs_app, gate, calls):
    client = jobs_app(cache_entries=0).test_client()
    first = client.post(f"/api/{GATED}?async=true", json={}).get_json()["job_id"]
    later = [client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [i % 2]}).get_json()["job_id"]
             for i in range(3)]
    assert gate.reached[0].wait(timeout=20)
    statuses = {job["job_id"]: job["status"] for job in client.get("/api/jobs").get_json()["jobs"]}
    assert statuses[first] == "running" and all(statuses[j] == "queued" for j in later)
    assert calls.count == 0
    gate.open_all()
    finished = [wait_for_status(client, j, {"done"}) for j in [first, *later]]
    starts = [job["started_at"] for job in finished]
    assert starts == sorted(starts)
    assert all(earlier["finished_at"] <= nxt["started_at"] for earlier, nxt in zip(finished, finished[1:]))


def test_full_queue_is_503_with_retry_after_and_queued_jobs_cancel_at_once(jobs_app, gate):
    client = jobs_app(max_queued_jobs=2).test_client()
    running = client.post(f"/api/{GATED}?async=true", json={}).get_json()["job_id"]
    assert gate.reached[0].wait(timeout=20)
    queued = [client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [0]}).get_json()["job_id"]
              for _ in range(2)]
    refused = client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [0]})
    assert refused.status_code == 503 and int(refused.headers["Retry-After"]) >= 1
    assert set(refused.get_json()) == {"error", "details"}
    assert client.post("/api/jobs", json={"endpoint": WEIGHT_NORMS, "body": {"layers": [0]}}).status_code == 503
    cancelled = client.delete(f"/api/jobs/{queued[0]}").get_json()
    assert cancelled["status"] == "cancelled" and cancelled["model_name"] is None
    assert client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [1]}).status_code == 202
    gate.open_all()
    wait_for_status(client, running, {"done"})


def test_model_switch_waits_for_the_running_job(jobs_app, gate):
    app = jobs_app()
    client = app.test_client()
    job_id = client.post(f"/api/{GATED}?async=true", json={}).get_json()["job_id"]
    assert gate.reached[0].wait(timeout=20)
    switched = {}
    switcher = threading.Thread(target=lambda: switched.update(
        body=app.test_client().post("/api/models/switch", json={"model_name": "tiny-llama"}).get_json()))
    switcher.start()
    switcher.join(timeout=0.5)
    assert switcher.is_alive() and client.get("/api/health").get_json()["model_name"] == "tiny-gpt2"
    gate.open_all()
    job = wait_for_status(client, job_id, {"done"})
    switcher.join(timeout=30)
    assert job["model_name"] == "tiny-gpt2" and switched["body"]["current_model"] == "tiny-llama"


def test_finished_jobs_are_written_and_read_back_after_leaving_memory(jobs_app, calls):
    app = jobs_app(job_history=1, cache_entries=0)
    client = app.test_client()
    first = client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [0]}).get_json()["job_id"]
    done = wait_for_status(client, first, {"done"})
    path = app.extensions["neuronscope"].settings.data_dir / "jobs" / f"{first}.json"
    assert json.loads(path.read_text()) == done
    for _ in range(2):
        wait_for_status(client, client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [1]}).get_json()["job_id"], {"done"})
    listed = [job["job_id"] for job in client.get("/api/jobs").get_json()["jobs"]]
    assert first not in listed and len(listed) <= 2
    assert client.get(f"/api/jobs/{first}").get_json() == done
    assert client.get("/api/jobs?status=done").status_code == 200
    assert client.get("/api/jobs?status=bogus").status_code == 400


def test_progress_is_clamped_and_monotonic():
    job = Job(endpoint="x", params={}, task=None)
    seen = []
    for fraction in (0.2, 0.1, 0.5, 1.7, -3):
        job.report(fraction, "s")
        seen.append(job.progress)
    assert seen == [0.2, 0.2, 0.5, 1.0, 1.0]


def test_eta_extrapolates_elapsed_time():
    job = Job(endpoint="x", params={}, task=None, status=RUNNING, started_at=100.0)
    assert job.eta_seconds(now=110.0) is None
    job.report(0.25, "quarter")
    assert job.eta_seconds(now=110.0) == pytest.approx(30.0)


def test_long_runs_log_their_progress(jobs_app, caplog):
    client = jobs_app(cache_entries=0).test_client()
    with caplog.at_level("INFO", logger="neuronscope"):
        client.post(f"/api/{WEIGHT_NORMS}", json={"layers": [0, 1]})
        wait_for_status(client, client.post(f"/api/{WEIGHT_NORMS}?async=true", json={"layers": [0, 1]}).get_json()["job_id"], {"done"})
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith(f"{WEIGHT_NORMS}:  50% layer 1") for m in messages)
    assert any(m.startswith("job ") and f"{WEIGHT_NORMS}:  50% layer 1" in m for m in messages)
    assert any(m.startswith("job ") and m.split()[2] == "done" for m in messages)


def test_operations_that_are_not_cacheable_have_no_cache_header(jobs_app, gate):
    gate.open_all()
    response = jobs_app().test_client().post(f"/api/{GATED}", json={})
    assert response.status_code == 200 and "X-NeuronScope-Cache" not in response.headers
