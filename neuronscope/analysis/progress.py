"""Progress reporting for long analyses: a callback ``progress(fraction, step)``.

``fraction`` rises from 0 to 1; ``step`` says what is being done. A job runner may raise
from the callback to cancel the analysis at that step boundary.
"""

from __future__ import annotations

from typing import Callable

ProgressFn = Callable[[float, str], None]


def no_progress(fraction: float, step: str) -> None:
    """The default callback: ignore progress."""


def scaled(progress: ProgressFn, start: float, end: float) -> ProgressFn:
    """``progress`` for a sub-step that covers ``start..end`` of the whole."""
    return lambda fraction, step: progress(start + (end - start) * fraction, step)
