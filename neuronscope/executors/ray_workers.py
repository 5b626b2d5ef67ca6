"""The Ray executor: chunks on a pool of Ray actors, each holding one loaded copy of the model.

The server process stays the only place that knows about jobs, files and the HTTP API: it
splits a sweep into chunks, hands them to the actors (two in flight per actor, so an actor never
waits for the server between chunks), merges the results, reports progress per chunk, retries
the chunks of an actor that died on the others (and starts a replacement), and cancels the Ray
tasks still in flight when the sweep is cancelled or fails.

Ray is imported only when this executor is configured (``NEURONSCOPE_EXECUTOR=ray``).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import ray
import torch
from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, TaskCancelledError

from neuronscope.analysis.progress import ProgressFn
from neuronscope.config import Settings
from neuronscope.errors import ExecutorUnavailable
from neuronscope.executors.base import Sweep, SweepStats, no_pause
from neuronscope.executors.work import run_chunk
from neuronscope.modeling.manager import LoadedModel, ModelManager

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent.parent
IN_FLIGHT_PER_WORKER = 2
MAX_ATTEMPTS = 4
"""Tries per chunk before the sweep fails (a chunk is retried only when its worker died), and
replacement workers started per sweep."""
WAIT_S = 0.5
"""How often the server checks for cancellation while chunks run."""
START_TIMEOUT_S = 600.0
"""How long the workers may take to load the model."""
CANCEL_GRACE_S = 10.0
"""How long a cancelled sweep waits for its Ray tasks to stop."""
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
"""Object store of a local Ray instance: chunks carry token ids and per-neuron numbers only."""


class ChunkCancelled(Exception):
    """Raised inside an actor when Ray has cancelled the chunk it is computing."""


def _stop_if_cancelled(_fraction: float, _step: str) -> None:
    if ray.get_runtime_context().is_canceled():
        raise ChunkCancelled("the chunk was cancelled")


class NeuronWorker:
    """A Ray actor: loads model ``name`` once with the server's ``settings`` and computes chunks."""

    def __init__(self, settings: Settings, name: str):
        torch.set_num_threads(settings.ray_cpus_per_worker)
        self.lm = ModelManager(settings).switch(name)

    def identity(self) -> str:
        """``name:fingerprint`` of the loaded weights (the server checks it matches its own model)."""
        return self.lm.identity()

    def run(self, kind: str, shared: dict, chunk: Any) -> Any:
        """One chunk; stops at the next progress step once Ray cancels it."""
        return run_chunk(self.lm, kind, shared, chunk, _stop_if_cancelled)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class Worker:
    """One actor of the pool; ``ready`` once its model's identity was checked."""

    actor: Any
    ready: bool = False


class WorkerPool:
    """The actors holding one model: started together, checked, replaced one by one, stopped."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.workers: list[Worker] = []
        self.identity: str | None = None

    def size(self) -> tuple[int, int]:
        """(workers, GPUs per worker): the configured count, else one per ``ray_gpus_per_worker``
        GPUs of the cluster, else one per ``ray_cpus_per_worker`` CPUs; GPUs only when the cluster
        has enough for every worker."""
        resources = ray.cluster_resources()
        gpus, per_worker = int(resources.get("GPU", 0)), self.settings.ray_gpus_per_worker
        if self.settings.ray_workers:
            return self.settings.ray_workers, per_worker if gpus >= self.settings.ray_workers * per_worker else 0
        if gpus >= per_worker:
            return gpus // per_worker, per_worker
        return max(1, int(resources.get("CPU", 1)) // self.settings.ray_cpus_per_worker), 0

    def _start_one(self, name: str) -> tuple[Worker, Any]:
        """A new actor loading model ``name``, and the ref of its identity report (not ready yet)."""
        _, gpus = self.size()
        actor_class = ray.remote(NeuronWorker).options(
            num_cpus=self.settings.ray_cpus_per_worker, num_gpus=gpus, max_restarts=0
        )
        worker_settings = self.settings.with_overrides({"device": "auto", "preload_model": False})
        worker = Worker(actor_class.remote(worker_settings, name))
        return worker, worker.actor.identity.remote()

    def ensure(self, name: str, identity: str) -> None:
        """Workers holding model ``name`` with weights ``identity``; (re)started when needed."""
        if identity == self.identity and self.workers:
            return
        self.shutdown()
        count, _ = self.size()
        started = [self._start_one(name) for _ in range(count)]
        try:
            reported = ray.get([check for _, check in started], timeout=START_TIMEOUT_S)
        except (RayActorError, GetTimeoutError, ray.exceptions.RayTaskError) as exc:
            for worker, _ in started:
                ray.kill(worker.actor)
            raise ExecutorUnavailable(f"the Ray workers could not load {name!r}: {exc}") from exc
        self.workers, self.identity = [worker for worker, _ in started], identity
        for worker, report in zip(self.workers, reported):
            self.accept(worker, report)
        log.info("%d Ray workers hold %s", count, name)

    def accept(self, worker: Worker, reported: str) -> None:
        """Let ``worker`` take chunks once the weights it reports are the server's; else stop the pool (503)."""
        if reported != self.identity:
            self.shutdown()
            raise ExecutorUnavailable(
                "the Ray workers loaded other weights than the server's model (is the model folder shared "
                "and unchanged on every node?)"
            )
        worker.ready = True

    def replace(self, worker: Worker, name: str) -> tuple[Worker, Any]:
        """Swap a dead ``worker`` for a new one; returns it and the ref of its identity report."""
        self.workers.remove(worker)
        replacement, check = self._start_one(name)
        self.workers.append(replacement)
        return replacement, check

    def shutdown(self) -> None:
        """Stop every worker (the model they hold is released)."""
        for worker in self.workers:
            ray.kill(worker.actor)
        self.workers = []
        self.identity = None


class RayExecutor:
    name = "ray"

    def __init__(self, settings: Settings):
        self.settings = settings
        self.pool = WorkerPool(settings)
        self.last_stats: SweepStats | None = None

    @property
    def workers(self) -> list[Worker]:
        return self.pool.workers

    def _connect(self) -> None:
        """Join ``RAY_ADDRESS``'s cluster, or start a local Ray instance under the data dir."""
        if ray.is_initialized():
            return
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a self-hosted server does not report usage
        runtime_env = {"py_modules": [str(PACKAGE_DIR)], "excludes": ["__pycache__"]}
        options: dict[str, Any] = dict(
            runtime_env=runtime_env, include_dashboard=False, configure_logging=False, log_to_driver=False
        )
        if self.settings.ray_address is None:
            temp_dir = self.settings.resolved_ray_temp_dir
            temp_dir.mkdir(parents=True, exist_ok=True)
            wanted = self.settings.ray_workers * self.settings.ray_cpus_per_worker
            options.update(
                num_cpus=max(os.cpu_count() or 1, wanted),
                object_store_memory=LOCAL_OBJECT_STORE_BYTES,
                _temp_dir=str(temp_dir),
            )
        try:
            ray.init(address=self.settings.ray_address, **options)
        except (ConnectionError, OSError, RuntimeError, ValueError) as exc:
            raise ExecutorUnavailable(f"could not start or join Ray: {exc}") from exc
        log.info("Ray ready: %s", ray.cluster_resources())

    def run(
        self, lm: LoadedModel, sweep: Sweep, progress: ProgressFn, between: Callable[[], None] = no_pause
    ) -> tuple[list, SweepStats]:
        """Results of ``sweep``'s chunks in order, computed on the pool's actors (which hold their
        own copies of the model, so ``between`` is not called: the server's model stays held)."""
        self._connect()
        self.pool.ensure(lm.name, lm.identity())
        stats = SweepStats(self.name, workers=len(self.pool.workers), chunks=len(sweep.chunks))
        self.last_stats = stats
        run = _Run(self.pool, lm.name, sweep, stats)
        try:
            return run.until_done(progress), stats
        finally:
            run.cancel_in_flight()

    def shutdown(self) -> None:
        """Stop the pool's workers (Ray itself stays up for the next pool)."""
        if ray.is_initialized():
            self.pool.shutdown()


class _Run:
    """The state of one sweep on the pool: queued chunks, refs in flight, results."""

    def __init__(self, pool: WorkerPool, model_name: str, sweep: Sweep, stats: SweepStats):
        self.pool = pool
        self.model_name = model_name
        self.sweep = sweep
        self.stats = stats
        self.shared = ray.put(dict(sweep.shared))
        self.queued: deque[int] = deque(range(len(sweep.chunks)))
        self.attempts = [0] * len(sweep.chunks)
        self.results: list[Any] = [None] * len(sweep.chunks)
        self.in_flight: dict[Any, tuple[Worker, int | None]] = {}
        self.replacements = 0

    def until_done(self, progress: ProgressFn) -> list:
        total = len(self.sweep.chunks)
        progress(0.0, f"{total} chunks on {len(self.pool.workers)} Ray workers")
        while self.queued or any(index is not None for _, index in self.in_flight.values()):
            self._hand_out()
            ready, _ = ray.wait(list(self.in_flight), num_returns=1, timeout=WAIT_S)
            for ref in ready:
                self._settle(ref)
            done = self.stats.chunks_done
            progress(done / total, f"{done}/{total} chunks done on {len(self.pool.workers)} Ray workers")
        return self.results

    def _hand_out(self) -> None:
        """Give queued chunks to ready workers, up to :data:`IN_FLIGHT_PER_WORKER` each."""
        load = {id(worker): 0 for worker in self.pool.workers}
        for worker, index in self.in_flight.values():
            if index is not None and id(worker) in load:
                load[id(worker)] += 1
        for worker in self.pool.workers:
            while worker.ready and self.queued and load[id(worker)] < IN_FLIGHT_PER_WORKER:
                index = self.queued.popleft()
                self.attempts[index] += 1
                ref = worker.actor.run.remote(self.sweep.kind, self.shared, self.sweep.chunks[index])
                self.in_flight[ref] = (worker, index)
                load[id(worker)] += 1

    def _settle(self, ref: Any) -> None:
        """Take one finished ref: a chunk's result, a replacement's identity report, or a lost worker."""
        worker, index = self.in_flight.pop(ref)
        try:
            value = ray.get(ref)
        except (RayActorError, ActorUnavailableError) as exc:
            self._worker_lost(worker, index, exc)
            return
        if index is None:
            self.pool.accept(worker, value)
            return
        self.results[index] = value
        self.stats.chunks_done += 1

    def _worker_lost(self, worker: Worker, index: int | None, exc: Exception) -> None:
        """Requeue the lost chunk (first in line), and replace the worker once."""
        if index is not None:
            if self.attempts[index] >= MAX_ATTEMPTS:
                raise ExecutorUnavailable(f"chunk {index} was lost with its worker {MAX_ATTEMPTS} times: {exc}")
            self.queued.appendleft(index)
            self.stats.retried_chunks += 1
            log.warning("a Ray worker died computing chunk %d; retrying it on another worker", index)
        if worker in self.pool.workers:
            if self.replacements >= MAX_ATTEMPTS:
                raise ExecutorUnavailable(f"{MAX_ATTEMPTS} Ray workers were lost during this sweep; the last: {exc}")
            self.replacements += 1
            replacement, check = self.pool.replace(worker, self.model_name)
            self.in_flight[check] = (replacement, None)

    def cancel_in_flight(self) -> None:
        """Cancel the chunks still in flight and wait (briefly) for them to stop."""
        chunk_refs = [ref for ref, (_, index) in self.in_flight.items() if index is not None]
        for ref in chunk_refs:
            ray.cancel(ref)
        if not chunk_refs:
            return
        ray.wait(chunk_refs, num_returns=len(chunk_refs), timeout=CANCEL_GRACE_S)
        for ref in chunk_refs:
            try:
                ray.get(ref, timeout=0)
            except (TaskCancelledError, ChunkCancelled):  # not started, or stopped at a progress step
                self.stats.cancelled_tasks += 1
            except Exception:  # noqa: BLE001 - a chunk that failed otherwise while being cancelled
                log.debug("an in-flight chunk ended with an error after the sweep stopped", exc_info=True)
        log.info("cancelled %d Ray tasks of a stopped sweep", self.stats.cancelled_tasks)
