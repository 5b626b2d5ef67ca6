"""Readable per-token strings and context snippets (no byte-level artefacts such as "Ġ")."""

from __future__ import annotations

from typing import Sequence

REPLACEMENT_CHAR = "\ufffd"


def _common_prefix_length(a: str, b: str) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length


def token_strings(tokenizer, ids: Sequence[int], window: int = 8) -> list[str]:
    """The text each token adds to the text of the tokens before it.

    Token ``i`` is decoded together with up to ``window`` preceding tokens and the decoding
    without it is subtracted, so word-initial spaces survive ("Ġworld" -> " world", "▁the" ->
    " the") and a character split over several byte-level tokens appears whole on the token
    that completes it (the earlier parts show as U+FFFD).
    """
    ids = [int(i) for i in ids]
    windows: list[list[int]] = []
    for i in range(len(ids)):
        start = max(0, i - window)
        windows.extend((ids[start:i], ids[start : i + 1]))
    decoded = tokenizer.batch_decode(windows, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    pieces = []
    for before, upto in zip(decoded[0::2], decoded[1::2]):
        piece = upto[_common_prefix_length(before, upto) :]
        if not piece and upto.endswith(REPLACEMENT_CHAR):
            piece = REPLACEMENT_CHAR  # a byte of a character that a later token completes
        pieces.append(piece)
    return pieces


def context_snippet(tokens: Sequence[str], position: int, before: int = 10, after: int = 6) -> dict[str, str]:
    """The text around ``tokens[position]``: ``before``, ``token``, ``after`` and a marked ``snippet``.

    The snippet marks the token as ``[[token]]``.
    """
    left = "".join(tokens[max(0, position - before) : position])
    token = tokens[position]
    right = "".join(tokens[position + 1 : position + 1 + after])
    return {"before": left, "token": token, "after": right, "snippet": f"{left}[[{token}]]{right}"}


def indexable_positions(tokenizer, ids: Sequence[int]) -> list[bool]:
    """False at special tokens (BOS, EOS, padding, ...), whose activations say nothing about the text."""
    special = set(tokenizer.all_special_ids)
    return [int(i) not in special for i in ids]


def padding_id(tokenizer) -> int:
    """An id to pad batches with (padded positions are masked, so any valid id works)."""
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return int(candidate)
    return 0
