"""A progress callback that writes long analyses' progress to the server log, throttled."""

from __future__ import annotations

import logging
import time

from neuronscope.analysis.progress import ProgressFn

log = logging.getLogger("neuronscope.progress")


def logged_progress(label: str, *, every_s: float = 5.0, every_fraction: float = 0.1) -> ProgressFn:
    """A callback logging ``label: 40% step`` at most every ``every_s`` s or ``every_fraction`` of progress."""
    started = time.monotonic()
    last = {"time": started, "fraction": 0.0}

    def progress(fraction: float, step: str) -> None:
        now = time.monotonic()
        if now - last["time"] < every_s and fraction - last["fraction"] < every_fraction:
            return
        last.update(time=now, fraction=fraction)
        elapsed = now - started
        eta = f", about {elapsed * (1 - fraction) / fraction:.0f} s left" if fraction > 0.01 else ""
        log.info("%s: %3.0f%% %s (%.0f s%s)", label, 100 * fraction, step, elapsed, eta)

    return progress
