"""One background job: its state, its progress, and how it is described to clients."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

from neuronscope.analysis.progress import ProgressFn
from neuronscope.timestamps import utc_now

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = frozenset({DONE, FAILED, CANCELLED})

# Below this fraction an ETA extrapolated from the elapsed time is noise.
_MIN_FRACTION_FOR_ETA = 0.01


class JobCancelled(BaseException):
    """Raised from a job's progress callback once the job is cancelled.

    A ``BaseException`` (like ``KeyboardInterrupt``) so that an analysis's ``except Exception``
    cannot swallow it; ``finally`` blocks (hook removal, lock release) still run.
    """


@dataclass(frozen=True)
class Outcome:
    """What a finished piece of work produced: the response body, the model it ran on, cache use."""

    result: dict
    model: str | None
    cached: bool = False


Task = Callable[[ProgressFn], Outcome]


@dataclass
class Job:
    """A job's mutable state. Only the :class:`~neuronscope.jobs.runner.JobRunner` mutates it, under its lock."""

    endpoint: str
    params: dict
    task: Task | None
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = QUEUED
    progress: float = 0.0
    step: str = "queued"
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    model: str | None = None
    cached: bool = False
    result: dict | None = None
    error: dict | None = None
    cancel_requested: bool = False
    version: int = 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def report(self, fraction: float, step: str) -> None:
        """Record progress: clamped to [0, 1] and never decreasing."""
        self.progress = max(self.progress, min(1.0, max(0.0, float(fraction))))
        self.step = step
        self.version += 1

    def eta_seconds(self, now: float | None = None) -> float | None:
        """Seconds left, extrapolated from the elapsed running time and the progress so far."""
        if self.status == DONE:
            return 0.0
        if self.status != RUNNING or self.started_at is None or self.progress < _MIN_FRACTION_FOR_ETA:
            return None
        elapsed = (now or time.time()) - self.started_at
        return round(elapsed * (1.0 - self.progress) / self.progress, 1)

    def describe(self, *, full: bool = True) -> dict[str, Any]:
        """The JSON view of the job; ``full`` adds its parameters, result and error."""
        view: dict[str, Any] = {
            "job_id": self.job_id,
            "endpoint": self.endpoint,
            "status": self.status,
            "progress": round(self.progress, 4),
            "step": self.step,
            "eta_seconds": self.eta_seconds(),
            "created_at": utc_now(self.created_at),
            "started_at": None if self.started_at is None else utc_now(self.started_at),
            "finished_at": None if self.finished_at is None else utc_now(self.finished_at),
            "model_name": self.model,
            "cached": self.cached,
            "cancel_requested": self.cancel_requested,
        }
        if full:
            view["params"] = self.params
            if self.status == DONE:
                view["result"] = self.result
            if self.error is not None:
                view["error"] = self.error
        return view
