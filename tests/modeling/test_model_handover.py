"""ModelManager.let_waiting_run: long work that holds the model lets waiting requests go first."""

from __future__ import annotations

import threading

import pytest

from neuronscope.errors import BadRequest, Conflict

from tests.support.jobs_support import wait_until


def test_a_pause_point_lets_the_waiting_request_run_before_the_work_goes_on(make_app):
    manager = make_app().extensions["neuronscope"].manager
    order: list[str] = []

    def request() -> None:
        with manager.use() as lm:
            order.append(f"request on {lm.name}")

    waiter = threading.Thread(target=request)
    with manager.use() as lm:
        waiter.start()
        assert wait_until(lambda: manager.waiting == 1)
        order.append("work, first step")
        manager.let_waiting_run(lm)
        order.append("work, second step")
        assert manager.waiting == 0
    waiter.join(10)
    assert order == ["work, first step", "request on tiny-gpt2", "work, second step"]


def test_without_a_waiting_request_the_work_keeps_the_model(make_app):
    manager = make_app().extensions["neuronscope"].manager
    order: list[str] = []

    def request() -> None:
        with manager.use():
            order.append("request")

    with manager.use() as lm:
        manager.let_waiting_run(lm)
        order.append("work, second step")
        waiter = threading.Thread(target=request)
        waiter.start()
        assert wait_until(lambda: manager.waiting == 1)
        order.append("work, third step")
    waiter.join(10)
    assert order == ["work, second step", "work, third step", "request"]


def test_a_switch_while_the_work_pauses_is_a_409_for_that_work(make_app):
    manager = make_app().extensions["neuronscope"].manager
    switch = threading.Thread(target=manager.switch, args=("tiny-llama",))
    with manager.use() as lm:
        switch.start()
        assert wait_until(lambda: manager.waiting == 1)
        with pytest.raises(Conflict, match="switched from 'tiny-gpt2' to 'tiny-llama'"):
            manager.let_waiting_run(lm)
    switch.join(30)
    with manager.use() as lm:
        assert lm.name == "tiny-llama"


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
