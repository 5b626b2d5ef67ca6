"""The model manager: exactly one model loaded at a time, shared by every request under one lock."""

from __future__ import annotations

import gc
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn

from neuronscope.config import Settings
from neuronscope.errors import ModelUnavailable, ServiceBusy
from neuronscope.modeling import loading, placement
from neuronscope.modeling.adapters import ArchitectureAdapter, adapter_for
from neuronscope.modeling.fingerprint import weights_fingerprint
from neuronscope.modeling.memo import ModelMemo

log = logging.getLogger(__name__)

HANDOVER_S = 0.05
"""How long a thread that hands the model lock over (a pause point, a switch waiting for paused
work) waits before it takes the lock back."""


@dataclass
class LoadedModel:
    """A loaded model with its tokenizer, adapter and provenance, and what is derived from it.

    ``device`` is where input ids go (the input embedding's device); with a device map the
    blocks may live on other devices, and accelerate moves activations between them. ``memo``
    keeps values computed from this model (scores, statistics, tuned batch sizes): they die with
    it, so a switch or a reload can never serve another model's numbers.
    """

    name: str
    source: loading.ModelSource
    model: nn.Module
    tokenizer: object
    adapter: ArchitectureAdapter
    device: torch.device
    loaded_at: float = field(default_factory=time.time)
    memo: ModelMemo = field(default_factory=ModelMemo, repr=False, compare=False)
    _identity: str | None = field(default=None, init=False, repr=False, compare=False)

    def identity(self) -> str:
        """``name:fingerprint`` of the weights (the result cache's and the Ray workers' key), computed once."""
        if self._identity is None:
            self._identity = f"{self.name}:{weights_fingerprint(self.model, self.tokenizer)}"
        return self._identity

    @property
    def known_identity(self) -> str | None:
        """The identity if it was computed already (never computes)."""
        return self._identity

    @property
    def config(self):
        return self.model.config

    @property
    def offloaded(self) -> bool:
        """Whether a device map left some weights out of the model (on CPU or disk)."""
        return placement.is_offloaded(self.model)

    def placement(self) -> dict[str, int]:
        """Bytes of parameters and buffers per device (``cpu``, ``cuda:N``, ``disk``)."""
        return placement.bytes_by_device(self.model)

    def parameter_bytes(self) -> int:
        """Bytes of the model's parameters and buffers (shared tensors once), wherever they live."""
        return sum(self.placement().values())


class ModelManager:
    """Loads lazily, switches safely, and serialises access with a re-entrant lock.

    ``use()`` holds the lock for the duration of an analysis, so a switch (which takes the
    same lock) never happens under a running analysis.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._lock = threading.RLock()
        self._handover = threading.Condition(self._lock)
        self._paused = False
        self._queue_lock = threading.Lock()
        self._waiting = 0
        self._owner: int | None = None
        self._current: LoadedModel | None = None
        self._loading: str | None = None

    @property
    def current_name(self) -> str | None:
        current = self._current
        return current.name if current else None

    @property
    def loading_name(self) -> str | None:
        return self._loading

    def _load(self, name: str) -> LoadedModel:
        source = loading.resolve(name, self.settings)
        device = loading.pick_device(self.settings.device)
        where = f"device_map={self.settings.device_map}" if self.settings.device_map else str(device)
        started = time.perf_counter()
        log.info("loading %s (%s) on %s", name, source.kind, where)
        self._loading = name
        try:
            model, tokenizer = loading.load(source, self.settings, device)
        finally:
            self._loading = None
        log.info("loaded %s (%s) on %s in %.1f s", name, source.kind, where, time.perf_counter() - started)
        return LoadedModel(name, source, model, tokenizer, adapter_for(model), placement.input_device(model))

    def ensure_loaded(self) -> LoadedModel:
        """The current model, loading the configured default first if none is loaded."""
        with self._lock:
            if self._current is None:
                self._current = self._load(self.settings.model)
            return self._current

    @contextmanager
    def _held(self, *, replacing: bool = False) -> Iterator[None]:
        """Take the model lock, queueing behind running work.

        503 with ``Retry-After`` when ``max_queued`` requests already wait, or when the lock
        stays busy for ``queue_timeout`` seconds. A thread that holds the lock already (a
        service called by a job, which holds it) takes it again without queueing. ``replacing``
        (a switch) also waits for work paused at :meth:`let_waiting_run` to finish: a switch
        never pulls the model from under work that only let other requests go first.
        """
        if self._owner == threading.get_ident():
            yield
            return
        with self._queue_lock:
            if self._waiting >= self.settings.max_queued:
                raise ServiceBusy(
                    f"{self._waiting} requests already wait for the model; retry later",
                    headers={"Retry-After": "10"},
                )
            self._waiting += 1
        deadline = time.monotonic() + self.settings.queue_timeout
        try:
            acquired = self._lock.acquire(timeout=self.settings.queue_timeout)
        finally:
            with self._queue_lock:
                self._waiting -= 1
        if not acquired:
            raise self._stayed_busy()
        self._owner = threading.get_ident()
        if replacing and not self._outwait_paused_work(deadline):
            raise self._stayed_busy()
        try:
            yield
        finally:
            self._owner = None
            self._lock.release()

    def _stayed_busy(self) -> ServiceBusy:
        return ServiceBusy(
            f"the model stayed busy for {self.settings.queue_timeout:.0f} s; retry later",
            headers={"Retry-After": "30"},
        )

    def _outwait_paused_work(self, deadline: float) -> bool:
        """With the lock held once: while some work is paused at :meth:`let_waiting_run`, hand the
        lock back to it and take it again, until that work has finished. False, with the lock no
        longer held, when that takes past ``deadline``."""
        while self._paused:
            self._owner = None
            self._lock.release()
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(HANDOVER_S, left))
            if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return False
            self._owner = threading.get_ident()
        return True

    @property
    def waiting(self) -> int:
        """How many requests wait for the model lock now."""
        return self._waiting

    def let_waiting_run(self) -> None:
        """A pause point for long work that holds the model: when requests wait for the model,
        release it until none waits, then take it back (the waiting requests go first).

        Call it only between steps that leave nothing in the model (no hooks, no edited weights).
        A model switch does not run meanwhile: it waits for the work to finish, so the work's
        model is still the current one afterwards. A thread that does not hold the lock returns at once.
        """
        if self._owner != threading.get_ident() or not self._waiting:
            return
        self._owner, self._paused = None, True
        try:
            while self._waiting:
                self._handover.wait(HANDOVER_S)  # releases the lock (however deeply held), then takes it back
        finally:
            self._owner, self._paused = threading.get_ident(), False

    @contextmanager
    def use(self) -> Iterator[LoadedModel]:
        """Hold the model (loading the default first if needed) for the duration of one analysis."""
        with self._held():
            yield self.ensure_loaded()

    def switch(self, name: str) -> LoadedModel:
        """Load ``name`` and make it current; on failure the previous model stays loaded.

        A name that is not a model name (400) and a switch to the model already loaded (a no-op)
        are answered at once, without queueing behind the work that holds the model (where the
        name leads is decided again under the lock: a folder may appear meanwhile)."""
        loading.resolve(name, self.settings)
        current = self._current
        if current is not None and current.name == name and self._loading is None:
            return current
        with self._held(replacing=True):
            if self._current is not None and self._current.name == name:
                return self._current
            previous = self._current
            try:
                new = self._load(name)
            except (OSError, ValueError, RuntimeError) as exc:
                raise ModelUnavailable(f"could not load {name!r}: {exc}") from exc
            self._current = new
            del previous
            release_memory()
            return new

    def peek(self) -> LoadedModel | None:
        """The current model without loading or locking (for health and memory reports)."""
        return self._current


def release_memory() -> None:
    """Collect garbage and return cached CUDA memory after a model is dropped."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
