"""Language-model quality: mean next-token loss and perplexity over texts, batched with padding masks."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from neuronscope.analysis.hooks import ablated_many
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter

DEFAULT_BATCH_TOKENS = 2048


@dataclass(frozen=True)
class Batch:
    """Right-padded sequences: ``input_ids`` and ``attention_mask`` ``[batch, seq]`` (mask 1 = real token)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor


@dataclass(frozen=True)
class LossReport:
    """Summed next-token cross-entropy (nats) over ``tokens`` predicted tokens of ``texts`` texts."""

    total_loss: float
    tokens: int
    texts: int

    @property
    def mean_loss(self) -> float:
        return self.total_loss / self.tokens

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean_loss)

    def as_dict(self) -> dict:
        return {
            "perplexity": self.perplexity,
            "mean_loss": self.mean_loss,
            "tokens": self.tokens,
            "texts": self.texts,
        }


def padded_batches(
    sequences: Sequence[torch.Tensor], *, batch_tokens: int = DEFAULT_BATCH_TOKENS, pad_id: int = 0
) -> Iterator[Batch]:
    """Group 1-D id sequences ``[seq_i]`` by length (longest first) into right-padded batches of
    at most ``batch_tokens`` padded tokens (one sequence per batch when a sequence alone is longer)."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    start = 0
    while start < len(order):
        longest = len(sequences[order[start]])
        size = max(1, batch_tokens // max(longest, 1))
        chunk = [sequences[i] for i in order[start:start + size]]
        ids = torch.full((len(chunk), longest), pad_id, dtype=torch.long, device=chunk[0].device)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(chunk):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        yield Batch(ids, mask)
        start += size


def token_losses(logits: torch.Tensor, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy per position and which positions count.

    ``logits``: ``[batch, seq, vocab]``. Returns ``losses`` and ``valid`` ``[batch, seq - 1]``:
    position t predicts token t + 1; it counts when both are real tokens.
    """
    targets = batch.input_ids[:, 1:]
    valid = (batch.attention_mask[:, 1:] * batch.attention_mask[:, :-1]).bool()
    losses = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets.flatten(), reduction="none")
    return losses.view_as(targets) * valid, valid


@torch.no_grad()
def next_token_loss(
    model: nn.Module,
    sequences: Sequence[torch.Tensor],
    *,
    adapter: ArchitectureAdapter | None = None,
    ablate: Mapping[int, Sequence[int]] | None = None,
    batch_tokens: int = DEFAULT_BATCH_TOKENS,
    pad_id: int = 0,
    progress: ProgressFn = no_progress,
) -> LossReport:
    """Mean next-token loss of ``model`` over 1-D token id ``sequences`` ``[seq_i]``.

    With ``ablate`` ``{layer: [neurons]}`` (and the model's ``adapter``) those neurons output 0.
    """
    total, tokens, done = 0.0, 0, 0
    context = ablated_many(adapter, dict(ablate)) if ablate else nullcontext()
    with context:
        for batch in padded_batches(sequences, batch_tokens=batch_tokens, pad_id=pad_id):
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
            losses, valid = token_losses(logits, batch)
            total += losses.sum(dtype=torch.float64).item()
            tokens += int(valid.sum())
            done += batch.input_ids.shape[0]
            progress(done / len(sequences), f"evaluated {done}/{len(sequences)} texts")
    return LossReport(total_loss=total, tokens=tokens, texts=len(sequences))
