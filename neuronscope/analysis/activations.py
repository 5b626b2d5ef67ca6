"""MLP neuron activations (the input of each block's MLP output projection), one text or batched."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from neuronscope.analysis.hooks import captured_activations
from neuronscope.modeling.adapters import ArchitectureAdapter
from neuronscope.modeling.placement import input_device


def neuron_activations(model: nn.Module, adapter: ArchitectureAdapter, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """Every neuron's activation at every token of one text, in one forward pass of the blocks (no LM head).

    ``input_ids``: ``[1, seq]``. Returns one tensor ``[seq, d_mlp(layer)]`` per layer, in layer order
    (a hooked record is ``[1, seq, d_mlp]``, or ``[seq, d_mlp]`` where the architecture flattens: OPT).
    """
    layers = range(adapter.n_layers)
    with captured_activations(adapter, layers) as records:
        forward_padded(model, input_ids, torch.ones_like(input_ids, dtype=torch.bool))
    return [records[layer][0].reshape(input_ids.shape[1], -1) for layer in layers]


def pad_right(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``[batch, longest]`` padded on the right with ``pad_id``, and the mask of real tokens.

    Right padding keeps every real token at its unpadded position, and under the causal mask a
    real token only sees earlier real tokens, so its activations equal the unbatched ones.
    """
    longest = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), longest), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = True
    return ids.to(device), mask.to(device)


@torch.no_grad()
def forward_padded(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> None:
    """Run the blocks on a right-padded batch ``ids`` ``[batch, seq]`` with its ``mask`` ``[batch, seq]``.

    Only the backbone runs (no LM head): the neurons are inside the blocks, and the logits
    ``[batch, seq, vocab]`` would cost time and memory for nothing.
    """
    model.base_model(input_ids=ids, attention_mask=mask.long(), use_cache=False)


def batched_activations(
    model: nn.Module,
    adapter: ArchitectureAdapter,
    sequences: Sequence[Sequence[int]],
    layers: Sequence[int],
    *,
    pad_id: int,
    batch_size: int,
) -> list[dict[int, torch.Tensor]]:
    """Activations of ``layers`` for each sequence, computed in padded batches.

    Returns, per sequence, ``{layer: [len(sequence), d_mlp(layer)]}`` (padding removed).
    """
    device = input_device(model)
    results: list[dict[int, torch.Tensor]] = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        ids, mask = pad_right(chunk, pad_id, device)
        with captured_activations(adapter, layers) as records:
            forward_padded(model, ids, mask)
        batches = {layer: records[layer][0].reshape(*ids.shape, -1) for layer in layers}  # [batch, longest, d_mlp]
        for row, seq in enumerate(chunk):
            results.append({layer: batches[layer][row, : len(seq)] for layer in layers})
    return results


def layer_summary(acts: torch.Tensor, tokens: Sequence[str], top: int = 5) -> dict:
    """Summary statistics of one layer's activations ``acts`` ``[seq, d_mlp]`` over ``tokens`` ``[seq]``.

    ``top_neurons``: the ``top`` neurons with the largest |activation| anywhere, with where it occurred.
    """
    peak, where = acts.abs().max(dim=0)  # [d_mlp], [d_mlp]
    order = peak.argsort(descending=True)[:top]
    return {
        "mean_activation": float(acts.mean()),
        "mean_abs_activation": float(acts.abs().mean()),
        "max_activation": float(acts.max()),
        "min_activation": float(acts.min()),
        "top_neurons": [
            {
                "neuron_index": int(n),
                "activation": float(acts[where[n], n]),
                "position": int(where[n]),
                "token": tokens[int(where[n])],
            }
            for n in order
        ],
    }
