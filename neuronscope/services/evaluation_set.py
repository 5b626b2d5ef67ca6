"""Which texts measure quality, the record that makes a perplexity reproducible, and the overlap rule.

:class:`DefaultSets` is the one place that names the default evaluation and calibration texts:
the first texts, in corpus order, of the default corpus' ``evaluation`` and ``calibration``
splits, up to a fixed number of words (a tokenizer-independent amount), or the built-in sets
when the default corpus cannot be built. The ``evaluation`` record travels with every perplexity
so a reader can tell what was measured and a rerun can check it measured the same thing
(identical token ids give identical numbers).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import transformers

from neuronscope.analysis.evaluation import DEFAULT_BATCH_TOKENS
from neuronscope.corpora.texts import word_count
from neuronscope.errors import BadRequest, CorpusUnavailable
from neuronscope.resources.texts import builtin_texts

log = logging.getLogger(__name__)

EVALUATION_WORDS = 15_000
"""Words of the default evaluation texts: 23,146 tokens for SmolLM2's tokenizer (>= 20,000)."""
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


def leading_texts(texts: Sequence[str], words: int) -> tuple[str, ...]:
    """The first ``texts`` until they hold at least ``words`` words (all of them when they hold fewer)."""
    chosen, count = [], 0
    for text in texts:
        if count >= words:
            break
        chosen.append(text)
        count += word_count(text)
    return tuple(chosen)


class DefaultSets:
    """The default evaluation and calibration texts (what a request without texts reads).

    ``corpus_texts`` returns the default corpus' text records ``{split, text, ...}`` in corpus
    order (raising :class:`CorpusUnavailable` when the corpus cannot be built); ``corpus`` is its
    name in the ``evaluation`` record; ``calibration_words`` the size of the calibration texts (the
    setting ``calibration_words``: 6,000 words are 9,574 tokens for SmolLM2's tokenizer). The two
    splits are disjoint by construction, but a corpus may hold the same text twice: calibration
    texts that :func:`overlapping` finds in the default evaluation texts are passed over, so the
    default sets never overlap. Recovery trains on the whole of those calibration texts. Without
    the corpus, the built-in sets are used (``corpus: "builtin"``) and the corpus is tried again
    next time.
    """

    def __init__(self, corpus: str, corpus_texts: Callable[[], Sequence[dict]], calibration_words: int):
        self.corpus = corpus
        self.calibration_words = calibration_words
        self._corpus_texts = corpus_texts
        self._sets: dict[str, TextSet] | None = None

    def _from_corpus(self) -> dict[str, TextSet] | None:
        if self._sets is None:
            try:
                texts = self._corpus_texts()
            except CorpusUnavailable as exc:
                log.warning("using the built-in evaluation and calibration texts: %s", exc)
                return None
            evaluation = leading_texts([t["text"] for t in texts if t["split"] == "evaluation"], EVALUATION_WORDS)
            candidates = [t["text"] for t in texts if t["split"] == "calibration"]
            duplicated = set(overlapping(candidates, evaluation))
            disjoint = [text for i, text in enumerate(candidates) if i not in duplicated]
            self._sets = {
                "evaluation": TextSet(self.corpus, "evaluation", evaluation),
                "calibration": TextSet(self.corpus, "calibration", leading_texts(disjoint, self.calibration_words)),
                "recovery": TextSet(self.corpus, "calibration", tuple(disjoint)),
            }
        return self._sets

    def _named(self, name: str, builtin: str) -> TextSet:
        sets = self._from_corpus()
        return sets[name] if sets is not None else TextSet("builtin", builtin, builtin_texts(builtin))

    def evaluation(self) -> TextSet:
        """The default evaluation texts: the corpus' ``evaluation`` split, first :data:`EVALUATION_WORDS` words."""
        return self._named("evaluation", "evaluation")

    def calibration(self) -> TextSet:
        """The default calibration texts: the corpus' ``calibration`` split, first ``calibration_words`` words
        of the texts that do not overlap the default evaluation texts."""
        return self._named("calibration", "calibration")

    def recovery(self) -> TextSet:
        """The default recovery texts: every text of the corpus' ``calibration`` split that does not overlap
        the default evaluation texts (a distillation sees more distinct tokens than a refit needs)."""
        return self._named("recovery", "calibration")


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
