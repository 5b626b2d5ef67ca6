"""The job runner: a FIFO queue, one worker thread, a bounded history, cancellation and change waits.

Jobs run one at a time in submission order. The worker thread exists only while there is
work: it starts on the first submission and exits when the queue is empty. The tasks take
the model lock themselves (through the services they call), so a model switch waits for the
running job; a synchronous request waits for the job's next pause point
(:meth:`~neuronscope.modeling.manager.ModelManager.let_waiting_run`) where it works in steps.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict, deque
from typing import Callable, Iterator

from neuronscope.analysis.progress import ProgressFn
from neuronscope.errors import Conflict, NeuronScopeError, NotFound, ServiceBusy
from neuronscope.jobs.job import CANCELLED, DONE, FAILED, FINISHED, QUEUED, RUNNING, Job, JobCancelled, Outcome, Task
from neuronscope.jobs.progress_log import logged_progress
from neuronscope.storage.files import JsonFolder

log = logging.getLogger(__name__)

_JOB_ID = re.compile(r"[0-9a-f]{32}")  # uuid4().hex
_DEFAULT_RETRY_AFTER_S = 5
_MAX_RETRY_AFTER_S = 300


class JobRunner:
    """Holds every job of one app and runs them, one at a time, on a worker thread.

    ``max_queued``: submissions beyond this many waiting jobs are refused with 503.
    ``history``: how many finished jobs stay in memory (the oldest finished are dropped first);
    every finished job is also written to ``folder`` and read back from there once dropped.
    ``current_model``: the name of the loaded model, recorded as the model of a job that fails or
    is cancelled while it runs (a running job holds the model, so it is the one the job ran on).
    """

    def __init__(
        self, folder: JsonFolder, *, max_queued: int, history: int, current_model: Callable[[], str | None] = lambda: None
    ):
        self.folder = folder
        self.current_model = current_model
        self.max_queued = max_queued
        self.history = history
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: deque[Job] = deque()
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None

    def submit(self, endpoint: str, params: dict, task: Task) -> Job:
        """Queue ``task`` as a job; 503 with ``Retry-After`` when the queue is full."""
        with self._changed:
            if len(self._queue) >= self.max_queued:
                raise ServiceBusy(
                    f"{len(self._queue)} jobs are already queued (limit {self.max_queued}); retry later",
                    headers={"Retry-After": str(self._retry_after())},
                )
            job = Job(endpoint=endpoint, params=params, task=task)
            self._jobs[job.job_id] = job
            self._queue.append(job)
            self._forget_old_jobs()
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="neuronscope-jobs", daemon=True)
                self._worker.start()
            self._changed.notify_all()
        log.info("job %s queued: %s", job.job_id, endpoint)
        return job

    def describe(self, job_id: str) -> dict:
        """The full view of a job, from memory or, once dropped from the history, from its file."""
        with self._changed:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.describe()
        return self._read_file(job_id)

    def recent(self, status: str | None = None) -> list[dict]:
        """Summaries of the jobs in memory, newest first, optionally of one status."""
        with self._changed:
            return [job.describe(full=False) for job in reversed(self._jobs.values()) if status in (None, job.status)]

    def activity(self) -> dict:
        """``{running: {job_id, endpoint, progress, step} | None, queued: N}``: what the worker does now."""
        with self._changed:
            job = self._running()
            running = None if job is None else {
                "job_id": job.job_id, "endpoint": job.endpoint, "progress": round(job.progress, 4), "step": job.step,
            }
            return {"running": running, "queued": len(self._queue)}

    def cancel(self, job_id: str) -> dict:
        """Cancel a queued job now, or a running one at its next progress step; 409 if finished."""
        with self._changed:
            job = self._jobs.get(job_id)
            if job is None:
                self._read_file(job_id)
                raise Conflict(f"job {job_id} has already finished")
            if job.finished:
                raise Conflict(f"job {job_id} has already finished ({job.status})")
            self._cancel(job, "cancelled before it started")
            return job.describe()

    def shutdown(self, timeout: float) -> bool:
        """Cancel every unfinished job (queued ones now, the running one at its next progress step,
        each written to its file as cancelled) and wait up to ``timeout`` s for the worker to stop.

        Returns whether the worker stopped in time. Later submissions start a new worker.
        """
        with self._changed:
            for job in [job for job in self._jobs.values() if not job.finished]:
                self._cancel(job, "cancelled before it started: the server shut down")
            worker = self._worker
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def wait_for_change(self, job_id: str, seen_version: int | None, timeout: float) -> tuple[dict, int] | None:
        """Block until the job's state differs from ``seen_version`` (or ``timeout`` passes).

        Returns its full view and version, or ``None`` once the job is no longer in memory.
        """
        with self._changed:
            self._changed.wait_for(lambda: self._version(job_id) != seen_version, timeout=timeout)
            job = self._jobs.get(job_id)
            return (job.describe(), job.version) if job is not None else None

    def follow(
        self, job_id: str, *, heartbeat_s: float = 15.0, lifetime_s: float | None = None, min_interval_s: float = 0.1
    ) -> Iterator[dict | None]:
        """Yield the job's view on every change (at most every ``min_interval_s``), ``None``
        after ``heartbeat_s`` without one, and stop after the view of its final state, or once
        ``lifetime_s`` has passed.
        """
        deadline = None if lifetime_s is None else time.monotonic() + lifetime_s
        version: int | None = None
        while True:
            wait = heartbeat_s if deadline is None else min(heartbeat_s, deadline - time.monotonic())
            if wait <= 0:
                return
            change = self.wait_for_change(job_id, version, timeout=wait)
            if change is None:
                yield self.describe(job_id)
                return
            view, latest = change
            if latest == version:
                yield None
                continue
            version = latest
            yield view
            if view["status"] in FINISHED:
                return
            time.sleep(min_interval_s)

    def _cancel(self, job: Job, queued_step: str) -> None:
        """Finish a queued ``job`` as cancelled now (with ``queued_step``), or ask a running one to
        stop at its next progress step (caller holds the lock)."""
        job.cancel_requested = True
        job.version += 1
        if job.status == QUEUED:
            self._queue.remove(job)
            self._finish(job, CANCELLED, queued_step)
        self._changed.notify_all()

    def _version(self, job_id: str) -> int | None:
        job = self._jobs.get(job_id)
        return job.version if job is not None else None

    def _read_file(self, job_id: str) -> dict:
        name = f"{job_id}.json"
        if not _JOB_ID.fullmatch(job_id) or not self.folder.exists(name):
            raise NotFound(f"no job {job_id!r}; GET /api/jobs lists the recent ones")
        return self.folder.read(name)

    def _running(self) -> Job | None:
        return next((job for job in self._jobs.values() if job.status == RUNNING), None)

    def _retry_after(self) -> int:
        running = self._running()
        eta = running.eta_seconds() if running is not None else None
        if eta is None:
            return _DEFAULT_RETRY_AFTER_S
        return max(1, min(_MAX_RETRY_AFTER_S, math.ceil(eta)))

    def _forget_old_jobs(self) -> None:
        finished = [job_id for job_id, job in self._jobs.items() if job.finished]
        for job_id in finished[: max(0, len(finished) - self.history)]:
            del self._jobs[job_id]

    def _work(self) -> None:
        while True:
            with self._changed:
                if not self._queue:
                    self._worker = None
                    return
                job = self._queue.popleft()
                job.status, job.started_at, job.step = RUNNING, time.time(), "started"
                job.version += 1
                self._changed.notify_all()
            self._run(job)

    def _run(self, job: Job) -> None:
        log.info("job %s started: %s", job.job_id, job.endpoint)
        try:
            outcome = job.task(self._progress_of(job))
        except JobCancelled:
            self._settle(job, CANCELLED, "cancelled")
        except NeuronScopeError as exc:
            self._settle(job, FAILED, "failed", error={"error": exc.error, "details": exc.details, "status": exc.status})
        except Exception:
            log.exception("job %s (%s) failed", job.job_id, job.endpoint)
            details = "the analysis failed unexpectedly; see the server log"
            self._settle(job, FAILED, "failed", error={"error": "Internal server error", "details": details, "status": 500})
        else:
            self._settle(job, DONE, "done", outcome=outcome)

    def _progress_of(self, job: Job) -> ProgressFn:
        log_progress = logged_progress(f"job {job.job_id} {job.endpoint}")

        def progress(fraction: float, step: str) -> None:
            with self._changed:
                if job.cancel_requested:
                    raise JobCancelled(job.job_id)
                job.report(fraction, step)
                self._changed.notify_all()
            log_progress(fraction, step)

        return progress

    def _settle(self, job: Job, status: str, step: str, *, error: dict | None = None, outcome: Outcome | None = None) -> None:
        with self._changed:
            if outcome is not None:
                job.result, job.model, job.cached = outcome.result, outcome.model, outcome.cached
                job.report(1.0, step)
            else:
                job.model = self.current_model()
            job.error = error
            log.info("job %s %s after %.1f s", job.job_id, status, time.time() - (job.started_at or job.created_at))
            self._finish(job, status, step)  # after the log line: a client that sees the status finds it logged
            self._changed.notify_all()

    def _finish(self, job: Job, status: str, step: str) -> None:
        """Mark ``job`` finished, let go of its task and write its file (caller holds the lock,
        so nobody sees the job finished before its file exists)."""
        job.status, job.step, job.finished_at = status, step, time.time()
        job.version += 1
        job.task = None
        try:
            self.folder.write(f"{job.job_id}.json", job.describe())
        except (OSError, ValueError):
            log.exception("could not write the file of job %s", job.job_id)
