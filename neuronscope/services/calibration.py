"""Calibration texts and neuron scores for every service: one rule for the texts, one memo for the scores.

The rule: each calibration text (given, a stored sample or a built-in paragraph) is tokenized with
the tokenizer's defaults and cut into consecutive pieces of at most the token limit (the
configured ``max_input_tokens``, or the model's context when that is shorter). No text is refused
for its length and no token is dropped; at least one piece must hold two tokens (400 otherwise).
"""

from __future__ import annotations

from typing import Sequence

import torch

from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.analysis.scores import SCORERS
from neuronscope.errors import BadRequest
from neuronscope.modeling.manager import LoadedModel
from neuronscope.services.validation import token_limit


def token_pieces(lm: LoadedModel, text: str, limit: int) -> list[torch.Tensor]:
    """``text``'s token ids cut into consecutive pieces ``[<= limit]`` on the model's input device."""
    ids = lm.tokenizer(text, return_tensors="pt")["input_ids"][0].to(lm.device)
    return list(torch.split(ids, limit)) if len(ids) else []


def pad_id(lm: LoadedModel) -> int:
    """The id that pads batches: the tokenizer's pad token, else its end-of-sequence token, else 0."""
    for token_id in (lm.tokenizer.pad_token_id, lm.tokenizer.eos_token_id):
        if token_id is not None:
            return int(token_id)
    return 0


def calibration(lm: LoadedModel, texts: Sequence[str], max_input_tokens: int, seed: int = 0) -> Calibration:
    """The calibration value of ``texts`` for ``lm`` by the rule above (400 when no piece has two tokens)."""
    limit, _ = token_limit(lm, max_input_tokens)
    pieces = tuple(piece for text in texts for piece in token_pieces(lm, text, limit))
    if not any(len(piece) >= 2 for piece in pieces):
        raise BadRequest("the calibration texts are too short: at least one text needs two tokens")
    return Calibration(pieces, pad_id(lm), seed)


def neuron_scores(
    lm: LoadedModel, method: str, inputs: Calibration, progress: ProgressFn = no_progress
) -> dict[int, torch.Tensor]:
    """``{layer: [d_mlp]}`` by the scorer named ``method``, memoized on the loaded model
    (per method and what the scorer reads: calibration ids, seed); the caller holds the model."""
    scorer = SCORERS[method]
    key = ("scores", method, scorer.key(inputs))
    return lm.memo.get(key, lambda: scorer(lm.adapter, inputs, progress))
