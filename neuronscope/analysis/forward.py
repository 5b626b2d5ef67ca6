"""Tokenisation and plain forward passes shared by every analysis."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ForwardResult:
    """Outputs of one text's forward pass.

    ``final_hidden``: ``[seq, d_model]``, the last entry of ``output_hidden_states`` (LM head input).
    ``logits``: ``[seq, vocab]``.
    """

    final_hidden: torch.Tensor
    logits: torch.Tensor


def encode(tokenizer, text: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """Token ids ``[1, seq]`` of ``text`` with the tokenizer's defaults (special tokens included)."""
    return tokenizer(text, return_tensors="pt")["input_ids"].to(device)


@torch.no_grad()
def run(model: nn.Module, input_ids: torch.Tensor) -> ForwardResult:
    """One forward pass of ``input_ids`` ``[1, seq]`` (no padding, no cache)."""
    out = model(input_ids=input_ids, output_hidden_states=True, use_cache=False)
    return ForwardResult(final_hidden=out.hidden_states[-1][0], logits=out.logits[0])

