"""Helpers shared by the activation, index and query tests."""

from __future__ import annotations


def projection_hooks(adapter) -> int:
    """Hooks on the MLP output projections, where NeuronScope's hooks live.

    (transformers 5 installs output-capturing hooks on the blocks at the first forward with
    ``output_hidden_states=True`` and keeps them, so a whole-model count is not 0 when clean.)
    """
    return sum(
        len(adapter.mlp_output(layer)._forward_pre_hooks) + len(adapter.mlp_output(layer)._forward_hooks)
        for layer in range(adapter.n_layers)
    )
