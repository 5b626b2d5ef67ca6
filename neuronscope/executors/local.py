"""The local executor: every chunk in the server process, one after the other, on the loaded model."""

from __future__ import annotations

from typing import Callable

from neuronscope.analysis.progress import ProgressFn, scaled
from neuronscope.executors.base import Sweep, SweepStats, no_pause
from neuronscope.executors.work import run_chunk
from neuronscope.modeling.manager import LoadedModel


class LocalExecutor:
    name = "local"

    def run(
        self, lm: LoadedModel, sweep: Sweep, progress: ProgressFn, between: Callable[[], None] = no_pause
    ) -> tuple[list, SweepStats]:
        """Results of ``sweep``'s chunks in order; progress within chunks and after each one,
        ``between`` between two chunks."""
        stats = SweepStats(self.name, workers=1, chunks=len(sweep.chunks))
        results = []
        total = len(sweep.chunks)
        for i, chunk in enumerate(sweep.chunks):
            if i:
                between()
            within = scaled(progress, i / total, (i + 1) / total)
            results.append(run_chunk(lm, sweep.kind, sweep.shared, chunk, within))
            stats.chunks_done += 1
            progress((i + 1) / total, f"chunk {i + 1}/{total} done")
        return results, stats

    def shutdown(self) -> None:
        """Nothing to release: the local executor holds no resources."""
