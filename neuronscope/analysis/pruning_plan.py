"""Which neurons to remove for a target sparsity, given per-neuron scores (higher = more important)."""

from __future__ import annotations

import math
from typing import Mapping

import torch

SCOPES = ("layer", "global")


def neurons_to_remove(count: int, sparsity: float) -> int:
    """``⌊sparsity · count + ½⌋``: the requested fraction of ``count`` neurons, rounded half up."""
    return math.floor(sparsity * count + 0.5)


def random_scores(sizes: Mapping[int, int], seed: int) -> dict[int, torch.Tensor]:
    """The random baseline: uniform scores ``[d_mlp]`` per layer from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return {layer: torch.rand(sizes[layer], generator=generator) for layer in sorted(sizes)}


def select_per_layer(scores: Mapping[int, torch.Tensor], sparsity: float) -> dict[int, list[int]]:
    """In every layer, the ``⌊sparsity · d_mlp + ½⌋`` lowest-scoring neurons (at least one kept).

    Ties go to the lower index. Returns ``{layer: sorted neuron indices}`` for layers that lose any.
    """
    chosen = {}
    for layer, layer_scores in sorted(scores.items()):
        k = min(neurons_to_remove(len(layer_scores), sparsity), len(layer_scores) - 1)
        if k > 0:
            order = torch.argsort(layer_scores.float().cpu(), stable=True)
            chosen[layer] = sorted(order[:k].tolist())
    return chosen


def select_global(scores: Mapping[int, torch.Tensor], sparsity: float) -> dict[int, list[int]]:
    """The ``⌊sparsity · N + ½⌋`` lowest-scoring neurons over all N neurons of the model, comparing
    raw scores across layers; each layer keeps its highest-scoring neuron.

    Ties go to the lower layer, then the lower index. Returns ``{layer: sorted neuron indices}``.
    """
    layers = sorted(scores)
    flat = torch.cat([scores[layer].float().cpu() for layer in layers])
    owner = torch.cat([torch.full((len(scores[layer]),), layer) for layer in layers])
    index = torch.cat([torch.arange(len(scores[layer])) for layer in layers])
    starts = torch.cumsum(torch.tensor([0] + [len(scores[layer]) for layer in layers[:-1]]), 0)
    protected = torch.stack([torch.argmax(scores[layer].float().cpu()) for layer in layers]) + starts
    flat[protected] = math.inf
    k = min(neurons_to_remove(len(flat), sparsity), len(flat) - len(layers))
    picked = torch.argsort(flat, stable=True)[:k]
    chosen: dict[int, list[int]] = {}
    for layer, neuron in zip(owner[picked].tolist(), index[picked].tolist()):
        chosen.setdefault(layer, []).append(neuron)
    return {layer: sorted(chosen[layer]) for layer in sorted(chosen)}


def select_neurons(scores: Mapping[int, torch.Tensor], sparsity: float, scope: str) -> dict[int, list[int]]:
    """Neurons to remove for ``scope`` ``"layer"`` (uniform per layer) or ``"global"``."""
    if scope == "layer":
        return select_per_layer(scores, sparsity)
    if scope == "global":
        return select_global(scores, sparsity)
    raise ValueError(f"unknown scope {scope!r}")
