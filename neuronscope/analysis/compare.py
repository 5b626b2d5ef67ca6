"""One text on the model as it is and with neurons ablated (the pruned model, by hooks): one
layer's activations and the next-token distributions of both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn

from neuronscope.analysis.forward import run
from neuronscope.analysis.hooks import ablated_many, captured_activations
from neuronscope.modeling.adapters import ArchitectureAdapter


@dataclass(frozen=True)
class Side:
    """``activations``: ``[seq, d_mlp(layer)]`` of the chosen layer; ``log_probs``: ``[seq, vocab]`` (float32)."""

    activations: torch.Tensor
    log_probs: torch.Tensor


@torch.no_grad()
def original_and_ablated(
    model: nn.Module, adapter: ArchitectureAdapter, input_ids: torch.Tensor, layer: int,
    ablate: Mapping[int, Sequence[int]],
) -> tuple[Side, Side]:
    """``input_ids`` ``[1, seq]`` run twice: as the model is, then with ``ablate``'s neurons set to 0
    at every position (what removing them without compensation does). The ablation hook comes
    first, so the captured activations of an ablated neuron read 0."""
    sides = []
    for removed in ({}, ablate):
        with ablated_many(adapter, removed), captured_activations(adapter, [layer]) as records:
            logits = run(model, input_ids).logits  # [seq, vocab]
        sides.append(Side(records[layer][0][0].float().cpu(), torch.log_softmax(logits.float(), dim=-1).cpu()))
    return sides[0], sides[1]


def kl_per_position(original: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """KL(p_original ‖ p_ablated) in nats at each position, from log-probabilities ``[seq, vocab]``; ``[seq]``."""
    return (original.exp() * (original - ablated)).sum(dim=-1).clamp_min(0.0)
