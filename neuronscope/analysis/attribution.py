"""The attribution estimate of a layer's per-neuron importance: one forward and one backward per text."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from neuronscope.analysis.block_runs import block_output
from neuronscope.analysis.hooks import activation_hooks, forward_hook
from neuronscope.analysis.importance import LayerImportance
from neuronscope.analysis.moments import ActivationMoments, activation_moments
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter
from neuronscope.modeling.placement import unhooked

JACOBIAN_TOKENS = 16
"""Tokens per final-norm JVP batch of the attribution estimate."""
ATTRIBUTION_PROBES = 32
"""Random projections of the attribution estimate (its rank agreement grows with more)."""


@torch.no_grad()
def final_norm_push(adapter: ArchitectureAdapter, residual: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``||J_t v_n||`` ``[seq, n]``: the final norm's Jacobian at each ``residual`` ``[seq, d_model]`` applied to ``directions`` ``[n, d_model]``.

    One forward-mode JVP per direction, vmapped (O(seq * n * d_model), no Jacobian matrix).
    """
    pushed = []
    with unhooked(adapter.final_norm()) as norm:
        for i in range(0, residual.shape[0], JACOBIAN_TOKENS):
            chunk = residual[i : i + JACOBIAN_TOKENS]

            def push(direction: torch.Tensor) -> torch.Tensor:
                return torch.func.jvp(norm, (chunk,), (direction.expand_as(chunk),))[1]

            pushed.append(torch.func.vmap(push)(directions).norm(dim=-1).T)  # [tokens, n]
    return torch.cat(pushed)


@dataclass(frozen=True)
class GradRun:
    """A forward with layer L's activations ``acts`` ``[1, seq, d_mlp]`` as a grad leaf."""

    acts: torch.Tensor
    last_block: torch.Tensor
    final_hidden: torch.Tensor


def forward_with_grad(adapter: ArchitectureAdapter, layer: int, ids: torch.Tensor) -> GradRun:
    """Forward ``ids`` ``[1, seq]`` with grad, making layer ``layer``'s activations a leaf."""
    leaf: list[torch.Tensor] = []
    last: list[torch.Tensor] = []

    def make_leaf(_layer: int, acts: torch.Tensor) -> torch.Tensor:
        leaf.append(acts.detach().requires_grad_(True))
        return leaf[0]

    with torch.enable_grad(), activation_hooks(adapter, [layer], make_leaf), forward_hook(
        adapter.blocks()[-1], lambda _m, _a, out: last.append(block_output(out))
    ):
        out = adapter.model(input_ids=ids, output_hidden_states=True, use_cache=False)
    return GradRun(leaf[0], last[0][0], out.hidden_states[-1][0])


def attribution_importance(
    adapter: ArchitectureAdapter,
    texts: Sequence[torch.Tensor],
    layer: int,
    *,
    ablation: str = "zero",
    probes: int = ATTRIBUTION_PROBES,
    seed: int = 0,
    progress: ProgressFn = no_progress,
) -> LayerImportance:
    """A one forward + one backward estimate of every neuron's ``impact_score`` in ``layer``.

    With ``da_n,t`` the ablation's change of the activation (``-a`` for zero, ``mean - a`` for
    mean ablation) and ``r_n,t`` the first-order ``||dh_t|| / ||h_t||``:

    - direct path, per token: ``d_n,t = |da_n,t| * ||J_t W_out,n|| / ||h_t||``, ``J_t`` the final
      norm's Jacobian at the last block's output (the change written straight to the residual
      stream, ignoring how later blocks react);
    - whole model, RMS over tokens: ``R_n ~= sqrt(mean_t r_n,t^2)`` from ``probes`` Gaussian
      random projections of the normalised final states (Johnson-Lindenstrauss), all
      back-propagated in one batched backward pass;
    - estimate: ``impact_n ~= mean_t d_n,t * R_n / sqrt(mean_t d_n,t^2)``: the token profile of
      the direct path, scaled to the whole model's first-order effect.

    Deterministic for a given ``seed``. docs/pruning.md gives its rank agreement with exact
    ablation (``benchmarks/attribution_candidates.py``).
    """
    moments = activation_moments(adapter, texts, [layer]) if ablation == "mean" else None
    stats = ActivationMoments()
    d_mlp = adapter.d_mlp(layer)
    direct_sum, direct_square, total_square = (torch.zeros(d_mlp, dtype=torch.float64) for _ in range(3))
    directions = adapter.output_directions(layer).detach()  # [d_mlp, d_model]
    generator = None
    for i, ids in enumerate(texts):
        traced = forward_with_grad(adapter, layer, ids)
        generator = generator or torch.Generator(device=ids.device).manual_seed(seed)
        a = traced.acts.detach()[0]  # [seq, d_mlp]
        stats.add(a)
        change = (moments[layer].mean().to(a) - a) if moments else -a
        h_norm = traced.final_hidden.detach().norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [seq, 1]
        direct = change.abs() * final_norm_push(adapter, traced.last_block.detach(), directions) / h_norm
        u = torch.randn(probes, *traced.final_hidden.shape, generator=generator, device=ids.device)
        with torch.enable_grad():
            (grads,) = torch.autograd.grad(traced.final_hidden / h_norm, traced.acts, u, is_grads_batched=True)
        sketch = (grads[:, 0] * change).sum(dim=1)  # [probes, d_mlp]
        direct_sum += direct.sum(dim=0).double().cpu()
        direct_square += direct.square().sum(dim=0).double().cpu()
        total_square += sketch.square().mean(dim=0).double().cpu()
        progress((i + 1) / len(texts), f"attribution: text {i + 1}/{len(texts)}")
    tokens = stats.count
    direct_rms = (direct_square / tokens).sqrt()
    scale = torch.where(direct_rms > 0, (total_square / tokens).sqrt() / direct_rms, torch.zeros_like(direct_rms))
    return LayerImportance(
        activation_magnitude=stats.mean_abs(),
        activation_variance=stats.variance(),
        impact_score=direct_sum / tokens * scale,
    )
