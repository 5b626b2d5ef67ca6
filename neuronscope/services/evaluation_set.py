"""Which texts measure quality, the record that makes a perplexity reproducible, and the overlap rule.

:func:`evaluation_set` is the one place that names the default evaluation texts; the
``evaluation`` record travels with every perplexity so a reader can tell what was measured and
a rerun can check it measured the same thing (identical token ids give identical numbers).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Sequence

import torch
import transformers

from neuronscope.analysis.evaluation import DEFAULT_BATCH_TOKENS
from neuronscope.errors import BadRequest
from neuronscope.resources.texts import builtin_texts

MIN_CONTAINED_CHARS = 64
"""An evaluation text holding a calibration text counts as overlap from this many characters on."""


@dataclass(frozen=True)
class TextSet:
    """Named texts: ``corpus`` and ``split`` say where they come from."""

    corpus: str
    split: str | None
    texts: tuple[str, ...]

    @property
    def source(self) -> str:
        """``texts``, ``samples`` or ``<corpus>:<split>`` (the ``text_source`` of responses)."""
        return self.corpus if self.split is None else f"{self.corpus}:{self.split}"


@dataclass(frozen=True)
class Evaluation:
    """Token id sequences ``[seq_i]`` to measure perplexity on and their ``evaluation`` record."""

    sequences: list[torch.Tensor]
    record: dict


def evaluation_set() -> TextSet:
    """The default evaluation texts (the built-in set until a default corpus has an evaluation split)."""
    return TextSet("builtin", "evaluation", builtin_texts("evaluation"))


def calibration_set() -> TextSet:
    """The default calibration texts, disjoint from :func:`evaluation_set`."""
    return TextSet("builtin", "calibration", builtin_texts("calibration"))


def token_digest(sequences: Sequence[torch.Tensor]) -> str:
    """sha256 of the token ids ``[seq_i]``: each sequence as its length then its ids, all little-endian int64."""
    digest = hashlib.sha256()
    for seq in sequences:
        digest.update(len(seq).to_bytes(8, "little"))
        digest.update(seq.detach().to(torch.int64).cpu().numpy().astype("<i8").tobytes())
    return digest.hexdigest()


def evaluation_record(
    sequences: Sequence[torch.Tensor], *, corpus: str, split: str | None, texts: int, max_length: int, dtype: torch.dtype
) -> dict:
    """What a perplexity was measured on and with: the ``evaluation`` record of every response."""
    return {
        "corpus": corpus,
        "split": split,
        "texts": texts,
        "sequences": len(sequences),
        "tokens": sum(len(seq) for seq in sequences),
        "sha256": token_digest(sequences),
        "max_length": max_length,
        "batch_tokens": DEFAULT_BATCH_TOKENS,
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def overlapping(calibration: Sequence[str], evaluation: Sequence[str]) -> list[int]:
    """Indices of the calibration texts that overlap an evaluation text: one contains the other
    after whitespace is collapsed (a calibration text inside an evaluation text counts from
    :data:`MIN_CONTAINED_CHARS` characters on, so short common phrases do not)."""
    plain_evaluation = [_plain(text) for text in evaluation]
    found = []
    for index, text in enumerate(calibration):
        plain = _plain(text)
        if any(e in plain or (len(plain) >= MIN_CONTAINED_CHARS and plain in e) for e in plain_evaluation):
            found.append(index)
    return found


def check_overlap(calibration: Sequence[str], evaluation: Sequence[str], allow_overlap: bool) -> None:
    """400 when calibration texts overlap the evaluation texts, unless ``allow_overlap``."""
    if allow_overlap:
        return
    found = overlapping(calibration, evaluation)
    if found:
        raise BadRequest(
            f"{len(found)} calibration text(s) (indices {found[:20]}) overlap the evaluation texts, so the "
            "perplexity would be measured on text the plan was fitted to; use other texts or set 'allow_overlap': true"
        )
