"""What an executor runs: a sweep of independent chunks, and what it reports about the run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping, Protocol, Sequence

from neuronscope.analysis.progress import ProgressFn
from neuronscope.modeling.manager import LoadedModel


@dataclass(frozen=True)
class Sweep:
    """Chunks of one analysis that can be computed apart, in any order, on any copy of the model.

    ``kind`` names the chunk function (:data:`neuronscope.executors.work.CHUNK_FUNCTIONS`);
    ``shared`` holds what every chunk reads (token ids, options); ``chunks`` one description each.
    """

    kind: str
    shared: Mapping[str, Any]
    chunks: Sequence[Any]


@dataclass
class SweepStats:
    """How a sweep ran: on which executor and how many workers, what was retried or cancelled."""

    executor: str
    workers: int
    chunks: int
    chunks_done: int = 0
    retried_chunks: int = 0
    cancelled_tasks: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def no_pause() -> None:
    """The default ``between`` of :meth:`Executor.run`: go straight on."""


class Executor(Protocol):
    """Runs every chunk of a sweep with the loaded model ``lm`` (or copies of it) and returns the
    chunks' results in chunk order. ``progress`` is called at least once per finished chunk and
    may raise to cancel the sweep. ``between`` is called between two chunks run on ``lm`` itself
    (the service passes :meth:`ModelManager.let_waiting_run`); executors whose chunks run on
    copies of the model elsewhere do not call it."""

    name: str

    def run(
        self, lm: LoadedModel, sweep: Sweep, progress: ProgressFn, between: Callable[[], None] = no_pause
    ) -> tuple[list, SweepStats]: ...

    def shutdown(self) -> None: ...
