"""ModelManager.let_waiting_run: long work that holds the model lets waiting requests go first."""

from __future__ import annotations

import threading

import pytest

from neuronscope.errors import BadRequest, ServiceBusy
from neuronscope.executors import local

from tests.support.jobs_support import Interleaving, wait_for_status, wait_until


def request_thread(manager, order: list[str]) -> threading.Thread:
    """A thread that, once started, waits for the model and records which model it ran on."""

    def request() -> None:
        with manager.use() as lm:
            order.append(f"request on {lm.name}")

    return threading.Thread(target=request)


def test_a_pause_point_lets_the_waiting_request_run_before_the_work_goes_on(make_app):
    manager = make_app().extensions["neuronscope"].manager
    order: list[str] = []
    waiter = request_thread(manager, order)
    with manager.use():
        waiter.start()
        assert wait_until(lambda: manager.waiting == 1)
        order.append("work, first step")
        manager.let_waiting_run()
        order.append("work, second step")
        assert manager.waiting == 0
    waiter.join(10)
    assert order == ["work, first step", "request on tiny-gpt2", "work, second step"]


def test_a_switch_waits_for_the_paused_work_and_the_other_requests_run_meanwhile(make_app):
    manager = make_app().extensions["neuronscope"].manager
    order: list[str] = []
    switch = threading.Thread(target=lambda: order.append(f"switched to {manager.switch('tiny-llama').name}"))
    waiter = request_thread(manager, order)
    with manager.use():
        switch.start()
        assert wait_until(lambda: manager.waiting == 1)
        waiter.start()
        assert wait_until(lambda: manager.waiting == 2)
        manager.let_waiting_run()
        order.append(f"work goes on with {manager.current_name}")
        waiter.join(10)
    switch.join(30)
    assert order == ["request on tiny-gpt2", "work goes on with tiny-gpt2", "switched to tiny-llama"]


@pytest.mark.parametrize("name, refused", [("../../etc/passwd", True), ("tiny-gpt2", False)])
def test_a_bad_name_or_the_loaded_model_is_answered_without_waiting_for_the_model(make_app, name, refused):
    manager = make_app().extensions["neuronscope"].manager
    answers: list[object] = []

    def switch() -> None:
        try:
            answers.append(manager.switch(name).name)
        except BadRequest as exc:
            answers.append(exc)

    with manager.use():
        caller = threading.Thread(target=switch)
        caller.start()
        caller.join(10)
        assert not caller.is_alive() and manager.waiting == 0
    assert isinstance(answers[0], BadRequest) if refused else answers == ["tiny-gpt2"]


def test_a_request_sent_during_a_whole_model_sweep_runs_between_two_chunks(make_app, monkeypatch):
    app = make_app(chunk_neurons=32)
    svc = app.extensions["neuronscope"]
    order = Interleaving(svc.manager)
    monkeypatch.setattr(local, "run_chunk", order.step(local.run_chunk))
    monkeypatch.setattr(svc.pruning, "weight_analysis", order.request(svc.pruning.weight_analysis))
    client = app.test_client()
    body = {"layer_indices": "all", "input_texts": ["The quick brown fox jumps."]}
    job_id = client.post("/api/pruning/neuron-importance?async=true", json=body).get_json()["job_id"]
    assert order.started.wait(30)
    assert client.get("/api/pruning/weight-analysis").status_code == 200
    done = wait_for_status(client, job_id, {"done", "failed"})
    assert done["status"] == "done", done
    chunks = done["result"]["executor"]["chunks"]
    assert chunks >= 2 and order.events == ["step", "request"] + ["step"] * (chunks - 1)
    assert len(done["result"]["importance_scores"]) == done["result"]["total_neurons"]


def test_a_request_sent_during_a_pruning_sweep_runs_between_two_rows(make_app, monkeypatch):
    app = make_app()
    svc = app.extensions["neuronscope"]
    order = Interleaving(svc.manager)
    monkeypatch.setattr(svc.compression, "quality", order.step(svc.compression.quality))
    monkeypatch.setattr(svc.pruning, "weight_analysis", order.request(svc.pruning.weight_analysis))
    client = app.test_client()
    body = {"methods": ["magnitude"], "sparsities": [0.1, 0.2, 0.3]}
    job_id = client.post("/api/pruning/sweep?async=true", json=body).get_json()["job_id"]
    assert order.started.wait(30)
    assert client.get("/api/pruning/weight-analysis").status_code == 200
    done = wait_for_status(client, job_id, {"done", "failed"}, timeout=120)
    assert done["status"] == "done", done
    assert order.events == ["step", "request", "step", "step"] and len(done["result"]["rows"]) == 3


def test_a_switch_that_outwaits_the_queue_timeout_is_refused_and_the_paused_work_keeps_its_model(make_app):
    manager = make_app(queue_timeout=1).extensions["neuronscope"].manager
    answers: list[object] = []

    def switch() -> None:
        try:
            answers.append(manager.switch("tiny-llama").name)
        except ServiceBusy as exc:
            answers.append(exc)

    caller = threading.Thread(target=switch)
    with manager.use():
        caller.start()
        assert wait_until(lambda: manager.waiting == 1)
        manager.let_waiting_run()
        caller.join(5)
        assert not caller.is_alive(), "the switch waited past its queue timeout for the work to finish"
        assert manager.current_name == "tiny-gpt2"
    assert len(answers) == 1 and isinstance(answers[0], ServiceBusy) and answers[0].status == 503
