"""Structured Optimal Brain Surgeon for MLP neurons: a covariance-aware pruning order per layer.

Removing neuron ``n`` of a layer drops ``a_n * W_out[n]`` from the layer's output. If the kept rows
of ``W_out`` may be refitted afterwards (as ``reconstruct`` compensation does), the damage of
removing a set ``S`` is the constrained least-squares error
``min_{W' : W'_S = 0} trace((W - W')^T H (W - W')) = trace(W_S^T (Hinv_SS)^-1 W_S)``, with ``H``
the (damped) Gram matrix of the centred activations. Greedy OBS removes one neuron at a time, the
cheapest ``||W_n||^2 / Hinv_nn``, and updates the remaining rows and ``Hinv`` exactly, so the
summed costs of a greedy prefix equal that optimum for the prefix (docs/compression.md, "obs").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuronscope.analysis.calibration import Calibration, run_calibration
from neuronscope.analysis.hooks import activation_hooks
from neuronscope.analysis.moments import centred_scale
from neuronscope.analysis.progress import ProgressFn, no_progress, scaled
from neuronscope.modeling.adapters import ArchitectureAdapter

OBS_DAMPING = 1e-2
"""Added to the Gram matrix's diagonal, as a multiple of its mean diagonal entry."""
COMPACT_EVERY = 32
"""Greedy steps between two compactions of the working matrices to the neurons still present."""


@dataclass
class GramSums:
    """Running sums over tokens of one layer's activations ``a``: ``sum a`` ``[d_mlp]`` and
    ``sum a a^T`` ``[d_mlp, d_mlp]`` (float64)."""

    count: int = 0
    total: torch.Tensor | float = 0.0
    gram: torch.Tensor | float = 0.0

    def add(self, acts: torch.Tensor) -> None:
        """Add activations ``[tokens, d_mlp]``."""
        acts = acts.detach().double().cpu()
        self.count += acts.shape[0]
        self.total = self.total + acts.sum(dim=0)
        self.gram = self.gram + acts.T @ acts

    def hessian(self, damping: float = OBS_DAMPING) -> torch.Tensor:
        """``Xc^T Xc + damping * mean(diag) * I`` ``[d_mlp, d_mlp]``, ``Xc`` the centred activations
        (the mean diagonal entry floored by :func:`~neuronscope.analysis.moments.centred_scale`)."""
        mean = self.total / self.count
        centred = self.gram - self.count * torch.outer(mean, mean)
        scale = centred_scale(centred, self.gram)
        return centred + damping * scale * torch.eye(centred.shape[0], dtype=centred.dtype)


def greedy_obs(weight: torch.Tensor, hessian: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The greedy structured-OBS removal order of one layer and each step's cost (float64).

    ``weight``: ``W_out`` ``[d_mlp, d_model]``; ``hessian``: ``H`` ``[d_mlp, d_mlp]``, positive
    definite. Each step removes the neuron ``n`` with the least ``||W_n||^2 / Hinv_nn`` among those
    left, then ``W <- W - Hinv[:, n] W_n / Hinv_nn`` and ``Hinv <- Hinv - Hinv[:, n] Hinv[n, :] / Hinv_nn``
    (the optimal update of the rows left, ``Hinv`` becoming the inverse of ``H`` restricted to them).
    Returns ``order`` ``[d_mlp]`` (neuron indices, first removed first) and ``costs`` ``[d_mlp]``
    (``costs[i]``: the error added by step ``i``; ``costs[:k].sum()`` is the constrained
    least-squares error of removing ``order[:k]``).
    """
    w = weight.detach().double().clone()
    hinv = torch.cholesky_inverse(torch.linalg.cholesky(hessian.double()))
    alive = torch.arange(w.shape[0])
    order, costs = [], []
    removed = torch.zeros(w.shape[0], dtype=torch.bool)
    for step in range(w.shape[0]):
        if step % COMPACT_EVERY == 0 and removed.any():
            keep = ~removed
            w, hinv, alive = w[keep], hinv[keep][:, keep], alive[keep]
            removed = removed[keep]
        diagonal = hinv.diagonal()
        cost = w.square().sum(dim=1) / diagonal
        cost[removed] = torch.inf
        n = int(torch.argmin(cost))
        column = hinv[:, n].clone()
        w.sub_(torch.outer(column, w[n] / column[n]))
        hinv.sub_(torch.outer(column, column / column[n]))
        removed[n] = True
        order.append(int(alive[n]))
        costs.append(float(cost[n]))
    return torch.tensor(order), torch.tensor(costs, dtype=torch.float64)


def obs_layer_scores(weight: torch.Tensor, hessian: torch.Tensor) -> torch.Tensor:
    """Scores ``[d_mlp]`` (float64) of one layer: the cumulative greedy-OBS error when each neuron is
    removed, over the layer's output energy ``trace(W^T H W)`` (monotone in the greedy order)."""
    order, costs = greedy_obs(weight, hessian)
    w = weight.detach().double()
    energy = float((w * (hessian.double() @ w)).sum()) or 1.0
    scores = torch.empty(len(order), dtype=torch.float64)
    scores[order] = torch.cumsum(costs, dim=0) / energy
    return scores


@torch.no_grad()
def activation_grams(adapter: ArchitectureAdapter, calibration: Calibration, progress: ProgressFn = no_progress) -> dict[int, GramSums]:
    """:class:`GramSums` of every layer over the calibration tokens, from one pass (each layer's
    activations ``[1, seq, d_mlp]``, or ``[seq, d_mlp]`` where the architecture flattens, are added
    sequence by sequence and never kept)."""
    sums = {layer: GramSums() for layer in range(adapter.n_layers)}

    def add(layer: int, acts: torch.Tensor) -> None:
        sums[layer].add(acts.reshape(-1, acts.shape[-1]))

    with activation_hooks(adapter, range(adapter.n_layers), add):
        run_calibration(adapter.model, calibration, scaled(progress, 0.0, 0.5))
    return sums


@torch.no_grad()
def obs_scores(
    adapter: ArchitectureAdapter,
    calibration: Calibration,
    progress: ProgressFn = no_progress,
    *,
    damping: float = OBS_DAMPING,
) -> dict[int, torch.Tensor]:
    """Per layer ``[d_mlp]`` (float32): :func:`obs_layer_scores` of the neurons' output rows with ``H``
    from the calibration activations (``damping`` times their mean variance on the diagonal); lower =
    remove first. The output rows are the writes into the residual stream
    (:meth:`ArchitectureAdapter.output_directions`: ``W_out``, on Gemma times its post-MLP norm's gain),
    so the error is the residual stream's."""
    grams = activation_grams(adapter, calibration, progress)
    scores = {}
    for layer in range(adapter.n_layers):
        hessian = grams.pop(layer).hessian(damping)
        scores[layer] = obs_layer_scores(adapter.output_directions(layer).detach().double().cpu(), hessian).float()
        progress(0.5 + 0.5 * (layer + 1) / adapter.n_layers, f"obs: layer {layer}")
    return scores
