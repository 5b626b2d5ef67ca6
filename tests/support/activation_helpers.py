"""Helpers shared by the activation, index and query tests."""

from __future__ import annotations

import numpy as np
import torch


def projection_hooks(adapter) -> int:
    """Hooks on the MLP output projections, where NeuronScope's hooks live.

    (transformers 5 installs output-capturing hooks on the blocks at the first forward with
    ``output_hidden_states=True`` and keeps them, so a whole-model count is not 0 when clean.)
    """
    return sum(
        len(adapter.mlp_output(layer)._forward_pre_hooks) + len(adapter.mlp_output(layer)._forward_hooks)
        for layer in range(adapter.n_layers)
    )


def captured(model, adapter, ids: list[int]) -> list[np.ndarray]:
    """Per layer ``[seq, d_mlp]``: the inputs of each MLP output projection, by a plain pre-hook
    (``[1, seq, d_mlp]``, or ``[seq, d_mlp]`` where the architecture flattens them: OPT)."""
    seen: dict[int, np.ndarray] = {}
    handles = [
        adapter.mlp_output(layer).register_forward_pre_hook(
            lambda _m, args, layer=layer: seen.__setitem__(layer, args[0].detach().reshape(len(ids), -1).numpy().copy())
        )
        for layer in range(adapter.n_layers)
    ]
    try:
        with torch.no_grad():
            model(input_ids=torch.tensor([ids]))
    finally:
        for handle in handles:
            handle.remove()
    return [seen[layer] for layer in range(adapter.n_layers)]
