"""Built-in English text sets written for the project: evaluation (perplexity) and calibration (scoring)."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

TEXT_SETS = ("evaluation", "calibration")


@lru_cache(maxsize=None)
def builtin_texts(kind: str) -> tuple[str, ...]:
    """The paragraphs of ``resources/<kind>_texts.txt`` (blank-line separated)."""
    if kind not in TEXT_SETS:
        raise ValueError(f"unknown text set {kind!r}; known: {', '.join(TEXT_SETS)}")
    text = resources.files("neuronscope.resources").joinpath(f"{kind}_texts.txt").read_text("utf-8")
    return tuple(paragraph.strip() for paragraph in text.split("\n\n") if paragraph.strip())
