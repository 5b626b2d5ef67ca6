"""Executors run an analysis split into independent chunks: in the server process (``local``,
the default) or on Ray actors (``ray``), chosen by ``NEURONSCOPE_EXECUTOR``."""

from __future__ import annotations

from neuronscope.config import Settings
from neuronscope.executors.base import Executor, Sweep, SweepStats
from neuronscope.executors.local import LocalExecutor

__all__ = ["Executor", "Sweep", "SweepStats", "build_executor"]


def build_executor(settings: Settings) -> Executor:
    """The executor ``settings.executor`` names (Ray is imported only when it is chosen)."""
    if settings.executor == "ray":
        try:
            from neuronscope.executors.ray_workers import RayExecutor
        except ImportError as exc:
            raise ValueError(f"NEURONSCOPE_EXECUTOR=ray needs Ray: pip install ray==2.58.0 ({exc})") from exc
        return RayExecutor(settings)
    return LocalExecutor()
