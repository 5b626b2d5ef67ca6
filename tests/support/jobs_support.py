"""Test-only long operations (registered by the tests, never shipped) and job helpers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from neuronscope.analysis.forward import encode, run
from neuronscope.analysis.hooks import ablated
from neuronscope.api.fields import Request, integer, integers, string
from neuronscope.api.long_running import ASYNC_VIEWS, LONG_OPERATIONS, Operation, respond
from neuronscope.services.validation import check_layer

WEIGHT_NORMS = "test/weight-norms"
GATED = "test/gated"


@dataclass
class Calls:
    """How many times each test operation's work actually ran."""

    count: int = 0


@dataclass(frozen=True, kw_only=True)
class WeightNorms(Request):
    layers: tuple[int, ...] = integers()
    order: int = integer(default=2, minimum=1, maximum=3)


def weight_norms_operation(calls: Calls) -> Operation:
    """Per layer, the p-norm of each neuron's output weights: a small weight analysis with progress per layer."""

    def handler(svc, r: WeightNorms, progress):
        calls.count += 1
        with svc.manager.use() as lm:
            norms = {}
            for i, layer in enumerate(r.layers):
                check_layer(lm, layer)
                progress(i / len(r.layers), f"layer {layer}")
                norms[str(layer)] = torch.linalg.vector_norm(lm.adapter.w_out(layer), ord=r.order, dim=1).tolist()
        return {"order": r.order, "norms": norms}

    return Operation(WEIGHT_NORMS, WeightNorms, handler, cacheable=True, supports_async=True)


def numpy_norms(lm, layer: int, order: int) -> np.ndarray:
    """The same norms computed independently from the state dict with numpy (GPT-2 Conv1D stores [in, out])."""
    weight = lm.model.state_dict()[f"transformer.h.{layer}.mlp.c_proj.weight"].numpy()
    return np.linalg.norm(weight, ord=order, axis=1)


@dataclass
class Gate:
    """Lets a test hold a running job at a step boundary: the job waits at each step until released."""

    steps: int = 4
    reached: list[threading.Event] = field(default_factory=list)
    release: list[threading.Event] = field(default_factory=list)
    completed: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.reached = [threading.Event() for _ in range(self.steps)]
        self.release = [threading.Event() for _ in range(self.steps)]

    def open_all(self) -> None:
        for event in self.release:
            event.set()


@dataclass(frozen=True, kw_only=True)
class Gated(Request):
    text: str = string(default="Hello world")


def gated_operation(gate: Gate) -> Operation:
    """Ablates neurons of layer 0 for its whole run and runs one forward pass per step, pausing at each."""

    def handler(svc, r: Gated, progress):
        with svc.manager.use() as lm, ablated(lm.adapter, 0, [0, 1, 2]):
            ids = encode(lm.tokenizer, r.text, lm.device)
            total = 0.0
            for step in range(gate.steps):
                progress(step / gate.steps, f"step {step}")
                gate.reached[step].set()
                if not gate.release[step].wait(timeout=20):
                    raise RuntimeError(f"the test never released step {step}")
                total += float(run(lm.model, ids).logits.sum())
                gate.completed.append(step)
        return {"total": total, "steps": gate.steps}

    return Operation(GATED, Gated, handler, supports_async=True)


def add_test_views(app) -> None:
    """Routes for the test operations (while a test registers them in LONG_OPERATIONS), answered like the real ones."""
    for endpoint in (WEIGHT_NORMS, GATED):
        view: Callable = lambda endpoint=endpoint: respond(LONG_OPERATIONS[endpoint])  # noqa: E731
        app.add_url_rule(f"/api/{endpoint}", endpoint=endpoint.replace("/", "_"), view_func=view, methods=["POST"])
        ASYNC_VIEWS.add(endpoint.replace("/", "_"))


def wait_until(condition: Callable[[], bool], seconds: float = 15.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``seconds`` pass (its last value)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@dataclass
class Interleaving:
    """The order of a job's steps and of a request sent while the job holds the model: wrap the
    job's step function with :meth:`step` (its first call waits until the request waits for the
    model) and the request's service method with :meth:`request`."""

    manager: object
    events: list[str] = field(default_factory=list)
    started: threading.Event = field(default_factory=threading.Event)

    def step(self, fn: Callable) -> Callable:
        def recorded(*args, **kwargs):
            if not self.events:
                self.started.set()
                assert wait_until(lambda: self.manager.waiting == 1)
            self.events.append("step")
            return fn(*args, **kwargs)

        return recorded

    def request(self, fn: Callable) -> Callable:
        def recorded(*args, **kwargs):
            self.events.append("request")
            return fn(*args, **kwargs)

        return recorded


def wait_for_status(client, job_id: str, statuses: set[str], timeout: float = 30.0) -> dict:
    """Poll ``GET /api/jobs/{id}`` until its status is one of ``statuses``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/api/jobs/{job_id}").get_json()
        if body["status"] in statuses:
            return body
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not reach {statuses}: {body}")


@dataclass
class HeldStep:
    """A job held inside one of its progress steps: ``paused`` is set there, ``resume`` lets it go;
    ``steps`` lists the steps counted so far."""

    paused: threading.Event = field(default_factory=threading.Event)
    resume: threading.Event = field(default_factory=threading.Event)
    steps: list[str] = field(default_factory=list)


def hold_jobs_at_step(monkeypatch, number: int, counts: Callable[[str], bool] = lambda step: True) -> HeldStep:
    """Make every job pause inside its ``number``-th progress step among those ``counts`` accepts
    (until ``resume`` is set or 20 s pass), so a test can cancel it mid-way."""
    from neuronscope.jobs.runner import JobRunner

    held = HeldStep()
    original = JobRunner._progress_of

    def pausing_progress_of(self, job):
        progress = original(self, job)

        def report(fraction: float, step: str) -> None:
            if counts(step):
                held.steps.append(step)
                if len(held.steps) == number:
                    held.paused.set()
                    held.resume.wait(timeout=20)
            progress(fraction, step)

        return report

    monkeypatch.setattr(JobRunner, "_progress_of", pausing_progress_of)
    return held


JOB_STOP_WAIT_S = 120.0


def stop_jobs(apps: list) -> None:
    """Cancel every app's queued and running jobs and wait for them to stop (fixture teardown), so
    no job of one test runs on into the next (where it would see that test's monkeypatches)."""
    stuck = [app for app in apps if not app.extensions["neuronscope"].long_runs.jobs.shutdown(JOB_STOP_WAIT_S)]
    assert not stuck, f"{len(stuck)} app(s) had a job that did not stop within {JOB_STOP_WAIT_S:.0f} s"
