"""What one neuron writes and how it fires: output tokens, similar neurons, activation windows.

An example's window is ``WINDOW`` tokens of its text around the example's position (the whole
text when shorter), from ``WINDOW_BEFORE`` tokens before it, moved back where the text ends sooner
after it, so that it keeps ``WINDOW`` tokens (:func:`window_bounds`).

Output tokens (pinned by the API): with ``w`` the neuron's output direction (its row of
``W_out``, ``[d_model]``), ``γ`` the final norm's scale and ``W_U`` the unembedding
(``[vocab, d_model]``), ``logits = W_U · (γ ⊙ w)``. The final norm's mean subtraction,
normalisation and bias are left out (GPT-2's final LayerNorm: γ only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from neuronscope.analysis.activations import forward_padded, pad_right
from neuronscope.analysis.block_runs import StopForward
from neuronscope.analysis.hooks import activation_hooks
from neuronscope.modeling.adapters import ArchitectureAdapter
from neuronscope.modeling.placement import input_device

WINDOW = 32
WINDOW_BEFORE = 24
EXAMPLES = 20
"""Examples a neuron page shows per tail; the index stores the activation windows of this many."""


@torch.no_grad()
def output_logits(adapter: ArchitectureAdapter, layer: int, neuron: int) -> torch.Tensor:
    """``W_U · (γ ⊙ w)`` ``[vocab]`` for neuron (layer, neuron), in float32 on the CPU."""
    w = adapter.output_directions(layer)[neuron].float().cpu()  # [d_model]
    gamma = adapter.final_norm_weight().float().cpu()  # [d_model]
    return adapter.unembedding_weight().float().cpu() @ (gamma * w)  # [vocab]


def extreme_entries(values: torch.Tensor, k: int) -> tuple[list[int], list[int]]:
    """Indices of the ``k`` largest (descending) and ``k`` smallest (ascending) entries of ``values`` ``[n]``."""
    k = min(k, values.shape[0])
    return values.topk(k).indices.tolist(), (-values).topk(k).indices.tolist()


@dataclass(frozen=True)
class OutputDirections:
    """Every neuron's unit output direction: ``unit`` ``[neurons, d_model]`` float32 on the CPU,
    each layer's output directions (``W_out`` rows as the residual stream gets them) stacked in layer order from row ``starts[layer]``."""

    unit: torch.Tensor
    starts: torch.Tensor

    def row(self, layer: int, neuron: int) -> int:
        return int(self.starts[layer]) + neuron


@torch.no_grad()
def output_directions(adapter: ArchitectureAdapter) -> OutputDirections:
    """The :class:`OutputDirections` of every layer (computed once per model: pages memoise it)."""
    rows = [adapter.output_directions(layer).float().cpu() for layer in range(adapter.n_layers)]  # [d_mlp, d_model] each
    unit = torch.cat(rows)
    unit = unit / unit.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sizes = torch.tensor([0] + [r.shape[0] for r in rows])
    return OutputDirections(unit=unit, starts=torch.cumsum(sizes, 0)[:-1])


@torch.no_grad()
def similar_neurons(directions: OutputDirections, layer: int, neuron: int, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` neurons of any layer whose output directions have the highest cosine similarity
    with neuron (layer, neuron)'s (itself left out): ``(layer, neuron, cosine)``, most similar first."""
    me = directions.row(layer, neuron)
    cosine = directions.unit @ directions.unit[me]  # [neurons]
    cosine[me] = float("-inf")
    best = cosine.topk(min(k, cosine.shape[0] - 1))
    layers = torch.searchsorted(directions.starts, best.indices, right=True) - 1
    found = [
        (int(other), int(row - directions.starts[other]), float(c))
        for other, row, c in zip(layers, best.indices, best.values)
    ]
    return sorted(found, key=lambda item: (-item[2], item[0], item[1]))


def window_bounds(lengths: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(starts, ends)`` ``[n]`` each: the example window of each position, at most ``WINDOW``
    positions of its text (of ``lengths`` ``[n]``) holding ``positions`` ``[n]``: from
    ``WINDOW_BEFORE`` before it, moved back where the text ends less than ``WINDOW -
    WINDOW_BEFORE`` positions after it."""
    ends = torch.minimum(lengths, (positions - WINDOW_BEFORE).clamp(min=0) + WINDOW)
    return (ends - WINDOW).clamp(min=0), ends


def window(length: int, position: int) -> tuple[int, int]:
    """:func:`window_bounds` of one position of a text of ``length``."""
    starts, ends = window_bounds(torch.tensor([length]), torch.tensor([position]))
    return int(starts[0]), int(ends[0])


@torch.no_grad()
def neuron_activation_rows(
    model: nn.Module, adapter: ArchitectureAdapter, layer: int, neuron: int,
    sequences: Sequence[Sequence[int]], *, pad_id: int,
) -> list[np.ndarray]:
    """Neuron (layer, neuron)'s activation at every token of each sequence (``[len]`` each), in one
    right-padded batch; the blocks after ``layer`` are not run."""
    if not sequences:
        return []
    ids, mask = pad_right(sequences, pad_id, input_device(model))
    seen: dict[str, torch.Tensor] = {}

    def hook(_layer: int, acts: torch.Tensor) -> None:
        seen["acts"] = acts[..., neuron].float().cpu().reshape(ids.shape)  # [batch, seq] (OPT hooks them flat)
        raise StopForward

    with activation_hooks(adapter, [layer], hook):
        try:
            forward_padded(model, ids, mask)
        except StopForward:
            pass
    acts = seen["acts"].numpy()
    return [acts[row, : len(seq)] for row, seq in enumerate(sequences)]

