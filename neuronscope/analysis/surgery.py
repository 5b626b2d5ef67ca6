"""Physical removal of MLP neurons: smaller projections, updated config, exact parameter accounting."""

from __future__ import annotations

import copy
from typing import Mapping, Sequence

import torch
from torch import nn

from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter, adapter_for, weight_in_out


def kept_neurons(d_mlp: int, removed: Sequence[int]) -> torch.Tensor:
    """Indices ``[d_mlp - len(removed)]`` of the neurons that stay, in ascending order."""
    keep = torch.ones(d_mlp, dtype=torch.bool)
    keep[torch.as_tensor(list(removed), dtype=torch.long)] = False
    return keep.nonzero().squeeze(1)


def parameters_per_neuron(adapter: ArchitectureAdapter, layer: int) -> int:
    """Parameters one neuron of ``layer`` owns: its row of each input projection (with its bias
    entry, where the projection has a bias) and its row of ``W_out`` (the output bias is shared)."""
    per_input = [
        weight_in_out(module).shape[0] + (getattr(module, "bias", None) is not None)
        for module in adapter.mlp_inputs(layer).values()
    ]
    return sum(per_input) + adapter.d_model


def parameter_count(model: nn.Module) -> int:
    """Unique parameters of ``model`` (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())


def remove_neurons(
    adapter: ArchitectureAdapter,
    removed_by_layer: Mapping[int, Sequence[int]],
    *,
    progress: ProgressFn = no_progress,
) -> list[int]:
    """Remove the given neurons from ``adapter.model`` in place; returns the per-layer MLP sizes.

    The remaining neurons keep their order; the config records the new sizes (see
    :meth:`ArchitectureAdapter.record_mlp_sizes`). The caller validates the indices.
    """
    layers = sorted(removed_by_layer)
    with torch.no_grad():
        for done, layer in enumerate(layers):
            adapter.keep_neurons(layer, kept_neurons(adapter.d_mlp(layer), removed_by_layer[layer]))
            progress((done + 1) / len(layers), f"removed neurons of layer {layer}")
    sizes = [adapter.d_mlp(layer) for layer in range(adapter.n_layers)]
    adapter.record_mlp_sizes(sizes)
    return sizes


def pruned_copy(
    model: nn.Module,
    removed_by_layer: Mapping[int, Sequence[int]],
    *,
    progress: ProgressFn = no_progress,
) -> nn.Module:
    """A deep copy of ``model`` with the given neurons removed; ``model`` itself is not touched."""
    pruned = copy.deepcopy(model)
    remove_neurons(adapter_for(pruned), removed_by_layer, progress=progress)
    return pruned
