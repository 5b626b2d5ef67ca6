"""Independent reference computations for the pruning tests: plain forwards and numpy formulas.

Nothing here uses the batched engine: ablation is done by zeroing output-projection weights
(or a hand-written hook), and the metrics are the issue's formulas written out in numpy.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from transformers.pytorch_utils import Conv1D

from neuronscope.analysis.forward import run


def zeroed_copy(model: torch.nn.Module, adapter, neurons_by_layer: dict[int, list[int]]) -> torch.nn.Module:
    """A copy of ``model`` whose output projections read nothing from the given neurons (weights zeroed)."""
    pruned = copy.deepcopy(model)
    names = {id(module): name for name, module in model.named_modules()}
    with torch.no_grad():
        for layer, neurons in neurons_by_layer.items():
            module = pruned.get_submodule(names[id(adapter.mlp_output(layer))])
            if isinstance(module, Conv1D):
                module.weight[neurons, :] = 0.0  # Conv1D stores [in, out]
            else:
                module.weight[:, neurons] = 0.0  # Linear stores [out, in]
    return pruned


def outputs(model: torch.nn.Module, texts: list[torch.Tensor]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(final hidden ``[seq, d_model]``, logits ``[seq, vocab]``) per text, float64."""
    results = []
    for ids in texts:
        out = run(model, ids)
        results.append((out.final_hidden.double().numpy(), out.logits.double().numpy()))
    return results


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def reference_metrics(clean: list, ablated: list, texts: list[torch.Tensor]) -> dict:
    """The issue's definitions, pooled over every token of every text."""
    ratios, deltas, kls, ce_clean, ce_ablated = [], [], [], [], []
    for (h, logits), (h_abl, logits_abl), ids in zip(clean, ablated, texts):
        delta = h_abl - h
        ratios.append(np.linalg.norm(delta, axis=-1) / np.linalg.norm(h, axis=-1))
        deltas.append(np.abs(delta).ravel())
        p, q = _log_softmax(logits), _log_softmax(logits_abl)
        kls.append((np.exp(p) * (p - q)).sum(axis=-1))
        targets = ids[0, 1:].numpy()
        positions = np.arange(len(targets))
        ce_clean.append(-p[positions, targets])
        ce_ablated.append(-q[positions, targets])
    impact = float(np.concatenate(ratios).mean())
    ce_clean, ce_ablated = np.concatenate(ce_clean), np.concatenate(ce_ablated)
    return {
        "impact_score": impact,
        "mean_change": float(np.concatenate(deltas).mean()),
        "max_change": float(np.concatenate(deltas).max()),
        "safe_to_prune": impact < 0.1,
        "kl_divergence": float(np.concatenate(kls).mean()),
        "loss_delta": float(ce_ablated.mean() - ce_clean.mean()) if ce_clean.size else None,
    }


def activations(model: torch.nn.Module, module: torch.nn.Module, texts: list[torch.Tensor]) -> np.ndarray:
    """The inputs ``[tokens, d_mlp]`` of ``module`` over every text, by a plain hook."""
    seen = []
    handle = module.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().reshape(-1, args[0].shape[-1])))
    try:
        for ids in texts:
            run(model, ids)
    finally:
        handle.remove()
    return torch.cat(seen).double().numpy()


def with_replaced_neurons(model, module, neurons: list[int], values: np.ndarray, texts) -> list:
    """Outputs with the given neurons' activations replaced by ``values`` (a hand-written hook)."""

    def hook(_m, args):
        acts = args[0].clone()
        acts[..., neurons] = torch.as_tensor(values, dtype=acts.dtype)
        return (acts,)

    handle = module.register_forward_pre_hook(hook)
    try:
        return outputs(model, texts)
    finally:
        handle.remove()


def post_mlp_gain(model: torch.nn.Module, layer: int) -> np.ndarray | float:
    """The gain block ``layer``'s MLP output reaches the residual stream with, read from the modules:
    ``1 + g`` ``[d_model]`` of Gemma's ``post_feedforward_layernorm``, else 1."""
    blocks = model.transformer.h if hasattr(model, "transformer") else model.model.layers
    norm = getattr(blocks[layer], "post_feedforward_layernorm", None)
    return 1.0 if norm is None else 1 + norm.weight.detach().numpy()


def alike_tokens(tokens=9, width=64, seed=0):
    """Activations ``[tokens, width]`` that barely vary between tokens (a calibration text of one
    repeated special token): centring leaves rounding, which is slightly indefinite."""
    generator = torch.Generator().manual_seed(seed)
    row = 3.0 * torch.randn(width, generator=generator, dtype=torch.float64)
    return row.repeat(tokens, 1) + 1e-9 * torch.randn(tokens, width, generator=generator, dtype=torch.float64)
