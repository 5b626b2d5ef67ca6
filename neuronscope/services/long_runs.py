"""Running long analyses: now (synchronously) or as background jobs, answered from the cache when possible."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch

from neuronscope.analysis.progress import ProgressFn
from neuronscope.config import Settings
from neuronscope.errors import BadRequest
from neuronscope.jobs.cache import ResultCache, cache_key
from neuronscope.jobs.job import Job, Outcome
from neuronscope.jobs.progress_log import logged_progress
from neuronscope.jobs.runner import JobRunner
from neuronscope.jobs.streams import EventStreams
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.storage.files import JsonFolder

Work = Callable[[ProgressFn], dict]
PROBE_TOKENS = 64
PROBE_PASSES = 3


@dataclass(frozen=True)
class LongCall:
    """A validated long operation.

    ``params``: the request in API names, defaults filled in (the job's record);
    ``cache_params``: what, with the model, fully determines the result (``params`` plus the
    samples a ``use_samples`` call will read); ``work(progress)`` runs it through a service and
    returns the response body; ``cacheable``: whether the result may be served from the cache
    (deterministic and without side effects); ``estimate(lm)``: the tokens it will run forward
    passes over, for the synchronous work budget.
    """

    endpoint: str
    params: dict
    work: Work
    cacheable: bool
    cache_params: dict | None = None
    estimate: Callable[[LoadedModel], int] | None = None

    @property
    def key_params(self) -> dict:
        return self.params if self.cache_params is None else self.cache_params


class LongRunService:
    """Runs :class:`LongCall` s now or on the job runner, through the result cache."""

    def __init__(self, settings: Settings, manager: ModelManager):
        self.manager = manager
        self.cache = ResultCache(
            settings.cache_entries,
            settings.cache_bytes,
            settings.data_dir / "cache" if settings.cache_persist else None,
        )
        self.streams = EventStreams(settings.event_stream_limit)
        self.jobs = JobRunner(
            JsonFolder(settings.data_dir / "jobs", "job"),
            max_queued=settings.max_queued_jobs,
            history=settings.job_history,
            current_model=lambda: manager.current_name,
        )

    def run(self, call: LongCall, progress: ProgressFn | None = None, *, budget: float | None = None) -> Outcome:
        """Run ``call`` in this thread (under the model lock) unless its result is cached.

        A hit for the current model is answered without waiting for the model lock; a miss
        takes the lock, so the model cannot change between computing the key and the result.
        With a ``budget`` (seconds) a miss whose estimated time is over it is refused (400).
        """
        current = self.manager.peek()
        hit = self._cached(call, current, current.known_identity if current else None)
        if hit is not None:
            return hit
        with self.manager.use() as lm:
            identity = lm.identity() if call.cacheable else None
            hit = self._cached(call, lm, identity)
            if hit is not None:
                return hit
            if budget is not None and call.estimate is not None:
                self._check_budget(lm, call, budget)
            result = call.work(progress or logged_progress(call.endpoint))
            if identity is not None:
                self.cache.put(cache_key(identity, call.endpoint, call.key_params), result)
            return Outcome(result, lm.name)

    def _check_budget(self, lm: LoadedModel, call: LongCall, budget: float) -> None:
        """400 when ``call``'s estimated time (forward-pass tokens x the model's measured seconds
        per token) is over ``budget``: such work runs as a job (cancellable, with progress)."""
        tokens = call.estimate(lm)
        if tokens == 0:
            return
        seconds = tokens * self.seconds_per_token(lm)
        if seconds > budget:
            raise BadRequest(
                f"this request is estimated at {seconds:.0f} s of work ({tokens} tokens of forward passes), over "
                f"the synchronous budget of {budget:g} s (NEURONSCOPE_SYNC_BUDGET_SECONDS): send it with "
                "?async=true to run it as a job (with progress and cancellation), or ask for less",
                error="Too much work for a synchronous call",
            )

    def seconds_per_token(self, lm: LoadedModel) -> float:
        """Seconds per token of one forward pass of ``lm``, measured once per loaded model and kept in
        its memo (after a warm-up pass, the best of :data:`PROBE_PASSES` passes over
        :data:`PROBE_TOKENS` tokens, so a moment of load on the machine does not inflate it); the
        caller holds the model."""

        def probe() -> float:
            token = lm.tokenizer.eos_token_id or 0
            ids = torch.full((1, PROBE_TOKENS), token, dtype=torch.long, device=lm.device)
            timings = []
            with torch.no_grad():
                lm.model(input_ids=ids, use_cache=False)
                for _ in range(PROBE_PASSES):
                    started = time.perf_counter()
                    lm.model(input_ids=ids, use_cache=False)
                    timings.append(time.perf_counter() - started)
            return min(timings) / PROBE_TOKENS

        return lm.memo.get(("seconds-per-token",), probe)

    def submit(self, call: LongCall) -> Job:
        """Queue ``call`` as a background job (503 when the queue is full)."""
        return self.jobs.submit(call.endpoint, call.params, lambda progress: self.run(call, progress))

    def _cached(self, call: LongCall, lm: LoadedModel | None, identity: str | None) -> Outcome | None:
        if not call.cacheable or lm is None or identity is None:
            return None
        result = self.cache.get(cache_key(identity, call.endpoint, call.key_params))
        if result is None:
            return None
        return Outcome({**result, "cached": True}, lm.name, cached=True)
