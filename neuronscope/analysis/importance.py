"""Per-neuron importance of a layer (each neuron ablated on its own, exactly) and the critical-neuron rule."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import MutableMapping, Sequence

import torch

from neuronscope.analysis.ablation_engine import BATCH_TOKENS, ablation_sweep, clean_moments, clean_runs
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter


@dataclass(frozen=True)
class LayerImportance:
    """Per-neuron importance of one layer; every tensor is ``[d_mlp]``."""

    activation_magnitude: torch.Tensor
    activation_variance: torch.Tensor
    impact_score: torch.Tensor
    mean_change: torch.Tensor | None = None
    max_change: torch.Tensor | None = None


def neuron_importance(
    adapter: ArchitectureAdapter,
    texts: Sequence[torch.Tensor],
    layer: int,
    *,
    neurons: Sequence[int] | None = None,
    ablation: str = "zero",
    batch_tokens: int = BATCH_TOKENS,
    store: MutableMapping | None = None,
    progress: ProgressFn = no_progress,
) -> LayerImportance:
    """Each of ``neurons`` (default: every neuron) of ``layer`` ablated on its own over ``texts``:
    exact impact and activation stats, every tensor ``[len(neurons)]`` in the order of ``neurons``.

    A neuron's numbers do not depend on which other neurons are swept with it, so a layer can be
    split into neuron ranges computed apart (on other workers) and concatenated. ``store``: a
    dict kept with the model for tuned batch sizes and shared clean runs (see
    :func:`~neuronscope.analysis.ablation_engine.ablation_sweep`); the activation statistics are
    read from the clean runs.
    """
    neurons = list(range(adapter.d_mlp(layer)) if neurons is None else neurons)
    store = {} if store is None else store
    moments = clean_moments(clean_runs(adapter, texts, layer, False, [layer], store), [layer])
    ablations = [{layer: [n]} for n in neurons]
    totals = ablation_sweep(
        adapter, texts, ablations, ablation=ablation, moments=moments, batch_tokens=batch_tokens, store=store,
        progress=progress,
    )
    return LayerImportance(
        activation_magnitude=moments[layer].mean_abs()[neurons],
        activation_variance=moments[layer].variance()[neurons],
        impact_score=totals.impact_scores(),
        mean_change=totals.abs_sum / totals.elements,
        max_change=totals.max_abs,
    )


def critical_mask(impact: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    """Critical neurons ``[d_mlp]`` (bool): ``impact >= threshold`` when given, else the top quartile.

    The top quartile is the ``ceil(n / 4)`` largest impact scores, ties to the lower index.
    """
    if threshold is not None:
        return impact >= threshold
    top = torch.argsort(-impact, stable=True)[: math.ceil(impact.numel() / 4)]
    mask = torch.zeros(impact.numel(), dtype=torch.bool)
    mask[top] = True
    return mask
