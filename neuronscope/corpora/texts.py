"""Cutting documents into corpus texts and the fixed explore / calibration / evaluation split.

Texts are cut by a word rule, independent of any tokenizer: consecutive documents of one
category are joined (separated by a blank line) while the text stays within ``MAX_WORDS``
whitespace-separated words (uploads: each document stays its own text); a longer document is
cut into pieces of ``MAX_WORDS`` words. 120
words are about 190 tokens for the BPE tokenizers NeuronScope serves; indexing also caps every
text at ``MAX_TEXT_TOKENS`` tokens of the loaded model, so no indexed text exceeds 256 tokens.

The split is a function of a text's ordinal ``i`` (its position in the corpus): ``i % 10`` in
0-5 is ``explore``, 6-7 ``calibration``, 8-9 ``evaluation``. Each text thus lies in exactly one
split (disjoint by construction), and every category is spread over all three.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

MAX_WORDS = 120
MAX_TEXT_TOKENS = 256
SPLITS = ("explore", "calibration", "evaluation")
_SPLIT_OF_DIGIT = ("explore",) * 6 + ("calibration",) * 2 + ("evaluation",) * 2
_WORD = re.compile(r"\S+\s*")


def split_of(ordinal: int) -> str:
    """The split of the text at position ``ordinal`` of a corpus."""
    return _SPLIT_OF_DIGIT[ordinal % 10]


def word_count(text: str) -> int:
    return len(text.split())


def _pieces(document: str, max_words: int) -> list[str]:
    """``document`` cut into pieces of at most ``max_words`` words (whitespace inside kept)."""
    words = _WORD.findall(document.strip())
    return ["".join(words[i : i + max_words]).strip() for i in range(0, len(words), max_words)]


def cut_texts(
    documents: Iterable[tuple[str, str]], max_words: int = MAX_WORDS, *, join: bool = True
) -> list[tuple[str, str]]:
    """``(category, text)`` texts of at most ``max_words`` words from ``(category, document)`` pairs, in order.

    ``join``: consecutive documents of one category share a text while it has room.
    """
    texts: list[tuple[str, str]] = []
    current: list[str] = []
    current_category, words = None, 0
    for category, document in documents:
        for piece in _pieces(document, max_words):
            size = word_count(piece)
            if current and (not join or category != current_category or words + size > max_words):
                texts.append((current_category, "\n\n".join(current)))
                current, words = [], 0
            current.append(piece)
            current_category, words = category, words + size
    if current:
        texts.append((current_category, "\n\n".join(current)))
    return texts


def corpus_texts(documents: Iterable[tuple[str, str]], max_words: int = MAX_WORDS, *, join: bool = True) -> list[dict]:
    """The corpus records ``{id, split, category, text}`` of ``documents`` cut by :func:`cut_texts`."""
    return [
        {"id": i, "split": split_of(i), "category": category, "text": text}
        for i, (category, text) in enumerate(cut_texts(documents, max_words, join=join))
    ]


def split_ids(texts: Sequence[dict]) -> dict[str, list[int]]:
    """The text ids of each split."""
    return {split: [t["id"] for t in texts if t["split"] == split] for split in SPLITS}
