"""First-order Taylor saliency of MLP neurons: mean over real tokens of |a · ∂loss/∂a|."""

from __future__ import annotations

import torch
from torch import nn

from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.evaluation import padded_batches, token_losses
from neuronscope.analysis.hooks import activation_hooks, forward_hook
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter

DEFAULT_TAYLOR_BATCH_TOKENS = 512


def _differentiable_embeddings(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor | None:
    """Make the forward differentiable even when the model's parameters do not require grad."""
    return None if output.requires_grad else output.detach().requires_grad_(True)


def taylor_scores(
    adapter: ArchitectureAdapter,
    calibration: Calibration,
    progress: ProgressFn = no_progress,
    *,
    batch_tokens: int = DEFAULT_TAYLOR_BATCH_TOKENS,
) -> dict[int, torch.Tensor]:
    """Per layer ``[d_mlp]``: mean over real tokens t of ``|a_t,n · ∂L/∂a_t,n|``.

    ``L`` is the summed next-token cross-entropy of each batch of the calibration sequences
    (right-padded with ``calibration.pad_id``). Gradients are taken with
    :func:`torch.autograd.grad`, so no ``.grad`` of the model is touched.
    """
    model, sequences = adapter.model, calibration.sequences
    layers = list(range(adapter.n_layers))
    totals = {layer: torch.zeros(adapter.d_mlp(layer), dtype=torch.float64) for layer in layers}
    tokens, done = 0, 0
    for batch in padded_batches(sequences, batch_tokens=batch_tokens, pad_id=calibration.pad_id):
        records: dict[int, torch.Tensor] = {}  # [batch, seq, d_mlp] each, still in the autograd graph
        with torch.enable_grad(), forward_hook(model.get_input_embeddings(), _differentiable_embeddings), activation_hooks(
            adapter, layers, records.__setitem__
        ):
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False).logits
        with torch.enable_grad():
            losses, _ = token_losses(logits, batch)
            grads = torch.autograd.grad(losses.sum(), [records[layer] for layer in layers])
        mask = batch.attention_mask.unsqueeze(-1).to(grads[0].dtype)  # [batch, seq, 1]
        for layer, grad in zip(layers, grads):
            totals[layer] += (records[layer].detach() * grad * mask).abs().sum(dim=(0, 1)).double().cpu()
        tokens += int(batch.attention_mask.sum())
        done += batch.input_ids.shape[0]
        progress(done / len(sequences), f"taylor scores: {done}/{len(sequences)} texts")
    return {layer: (total / tokens).float() for layer, total in totals.items()}
