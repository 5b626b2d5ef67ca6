"""Moments of neuron activations over tokens (the mean fills of mean ablation, the importance statistics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from neuronscope.analysis.forward import run
from neuronscope.analysis.hooks import captured_activations
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter


CENTRING_FLOOR = 1e-6
"""Least scale of a centred Gram matrix, as a fraction of the uncentred one's. Centring subtracts
``n m m^T`` from ``X^T X``; where the activations barely vary between tokens (a calibration text of
one repeated special token), what is left is rounding, which may be slightly indefinite, so a damping
scaled to it alone would not make the matrix positive definite."""


def centred_scale(centred: torch.Tensor, uncentred: torch.Tensor) -> float:
    """The mean diagonal entry of ``centred`` ``[k, k]``, at least :data:`CENTRING_FLOOR` times that of
    ``uncentred`` ``[k, k]``, the Gram matrix it was centred from (1 when both are 0): the scale a
    damping or ridge is given in."""
    size = max(centred.shape[0], 1)
    floor = CENTRING_FLOOR * float(uncentred.diagonal().sum()) / size
    return max(float(centred.diagonal().sum()) / size, floor) or 1.0


@dataclass
class ActivationMoments:
    """Running sums of one layer's activations ``a`` over tokens (float64, ``[d_mlp]`` each)."""

    count: int = 0
    total: torch.Tensor | float = 0.0
    abs_total: torch.Tensor | float = 0.0
    square_total: torch.Tensor | float = 0.0

    def add(self, acts: torch.Tensor) -> None:
        """Add activations ``[tokens, d_mlp]``."""
        acts = acts.detach().double().cpu()
        self.count += acts.shape[0]
        self.total = self.total + acts.sum(dim=0)
        self.abs_total = self.abs_total + acts.abs().sum(dim=0)
        self.square_total = self.square_total + acts.square().sum(dim=0)

    def mean(self) -> torch.Tensor:
        return self.total / self.count

    def mean_abs(self) -> torch.Tensor:
        return self.abs_total / self.count

    def variance(self) -> torch.Tensor:
        """Population variance over tokens."""
        return (self.square_total / self.count - self.mean().square()).clamp_min(0.0)


@torch.no_grad()
def activation_moments(
    adapter: ArchitectureAdapter,
    texts: Sequence[torch.Tensor],
    layers: Sequence[int],
    progress: ProgressFn = no_progress,
) -> dict[int, ActivationMoments]:
    """Moments of each layer's neuron activations over every token of ``texts`` (``[1, seq]`` ids each).

    A hooked record is ``[1, seq, d_mlp]``, or ``[seq, d_mlp]`` where the architecture flattens (OPT).
    """
    moments = {layer: ActivationMoments() for layer in layers}
    with captured_activations(adapter, layers) as records:
        for i, ids in enumerate(texts):
            run(adapter.model, ids)
            for layer in layers:
                acts = records[layer].pop()
                moments[layer].add(acts.reshape(-1, acts.shape[-1]))
            progress((i + 1) / len(texts), f"activations of text {i + 1}/{len(texts)}")
    return moments
