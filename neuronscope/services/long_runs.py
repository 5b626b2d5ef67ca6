"""Running long analyses: now (synchronously) or as background jobs, answered from the cache when possible."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from neuronscope.analysis.progress import ProgressFn
from neuronscope.config import Settings
from neuronscope.jobs.cache import ResultCache, cache_key
from neuronscope.jobs.job import Job, Outcome
from neuronscope.jobs.progress_log import logged_progress
from neuronscope.jobs.runner import JobRunner
from neuronscope.jobs.streams import EventStreams
from neuronscope.modeling.manager import LoadedModel, ModelManager
from neuronscope.storage.files import JsonFolder

Work = Callable[[ProgressFn], dict]


@dataclass(frozen=True)
class LongCall:
    """A validated long operation.

    ``params``: the normalised parameters that, with the model, fully determine the result
    (the cache key and the job's record); ``work(progress)`` runs it through a service and
    returns the response body; ``cacheable``: whether the result may be served from the cache
    (deterministic and without side effects).
    """

    endpoint: str
    params: dict
    work: Work
    cacheable: bool


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
        )

    def run(self, call: LongCall, progress: ProgressFn | None = None) -> Outcome:
        """Run ``call`` in this thread (under the model lock) unless its result is cached.

        A hit for the current model is answered without waiting for the model lock; a miss
        takes the lock, so the model cannot change between computing the key and the result.
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
            result = call.work(progress or logged_progress(call.endpoint))
            if identity is not None:
                self.cache.put(cache_key(identity, call.endpoint, call.params), result)
            return Outcome(result, lm.name)

    def submit(self, call: LongCall) -> Job:
        """Queue ``call`` as a background job (503 when the queue is full)."""
        return self.jobs.submit(call.endpoint, call.params, lambda progress: self.run(call, progress))

    def _cached(self, call: LongCall, lm: LoadedModel | None, identity: str | None) -> Outcome | None:
        if not call.cacheable or lm is None or identity is None:
            return None
        result = self.cache.get(cache_key(identity, call.endpoint, call.params))
        if result is None:
            return None
        return Outcome({**result, "cached": True}, lm.name, cached=True)
