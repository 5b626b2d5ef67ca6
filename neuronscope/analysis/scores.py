"""The registry of per-neuron pruning scores, kept apart from applying them (Torch-Pruning's importance idea).

Every scorer takes the same inputs (the model's adapter, one :class:`Calibration` value, a
progress callback) and returns ``{layer: scores [d_mlp]}`` for every layer; a lower score means a
less important neuron. :data:`SCORERS` keys them by method name and is the one list of method
names: services pick a scorer by name, the API's choices are :data:`SCORE_METHODS`.

A neuron's weights are row ``n`` of every MLP input projection and row ``n`` of ``W_out``,
all in ``[d_mlp, d_model]`` orientation; biases are excluded.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Hashable, Iterator, Mapping

import torch
from torch import nn

from neuronscope.analysis.calibration import Calibration, run_calibration
from neuronscope.analysis.hooks import activation_hooks, forward_pre_hook
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.analysis.pruning_plan import random_scores
from neuronscope.analysis.surgeon import obs_scores
from neuronscope.analysis.taylor import taylor_scores
from neuronscope.modeling.adapters import ArchitectureAdapter


ScoreFn = Callable[[ArchitectureAdapter, Calibration, ProgressFn], dict[int, torch.Tensor]]


def neuron_weight_rows(adapter: ArchitectureAdapter, layer: int) -> list[torch.Tensor]:
    """The matrices whose row ``n`` belongs to neuron ``n``: each ``W_in`` role, then ``W_out`` (``[d_mlp, d_model]``)."""
    return [*adapter.w_in(layer).values(), adapter.w_out(layer)]


@torch.no_grad()
def magnitude_scores(
    adapter: ArchitectureAdapter, calibration: Calibration = Calibration(), progress: ProgressFn = no_progress
) -> dict[int, torch.Tensor]:
    """Mean ``|w|`` over each neuron's weights, per layer ``[d_mlp]`` (``calibration`` unused)."""
    scores = {}
    for layer in range(adapter.n_layers):
        scores[layer] = layer_magnitude(adapter, layer)
        progress((layer + 1) / adapter.n_layers, f"layer {layer} weights")
    return scores


@torch.no_grad()
def layer_magnitude(adapter: ArchitectureAdapter, layer: int) -> torch.Tensor:
    """Mean ``|w|`` over each neuron's weights in ``layer``: ``[d_mlp]``."""
    rows = neuron_weight_rows(adapter, layer)
    return sum(w.abs().sum(dim=1) for w in rows) / sum(w.shape[1] for w in rows)


@torch.no_grad()
def wanda_scores(adapter: ArchitectureAdapter, calibration: Calibration, progress: ProgressFn = no_progress) -> dict[int, torch.Tensor]:
    """Wanda for whole neurons: mean over the neuron's weights of ``|w| * ||x||``, per layer ``[d_mlp]``.

    ``||x||`` is the L2 norm over every calibration token of the input feature the weight reads:
    a ``d_model`` feature of the MLP input for ``W_in`` rows, the neuron's own activation for
    its output row (Sun et al. 2023, |W| * ||X||, averaged per structural group). The output row is
    the neuron's write into the residual stream (:meth:`ArchitectureAdapter.output_directions`):
    its ``W_out`` row, times the gain of the norm Gemma applies to the MLP output before the add.
    """
    layers = range(adapter.n_layers)
    inputs = {(layer, role): module for layer in layers for role, module in adapter.mlp_inputs(layer).items()}
    with summed_inputs(inputs, _square_sum) as sums, summed_activations(adapter, _square_sum) as act_sums:
        run_calibration(adapter.model, calibration, progress)
    scores = {}
    for layer in layers:
        w_in = adapter.w_in(layer)
        total = sum(w.abs() @ sums[(layer, role)].sqrt().to(w.dtype) for role, w in w_in.items())
        w_out = adapter.output_directions(layer)
        total = total + w_out.abs().sum(dim=1) * act_sums[layer].sqrt().to(w_out.dtype)
        scores[layer] = total / (w_out.shape[1] * (len(w_in) + 1))
    return scores


@torch.no_grad()
def activation_scores(
    adapter: ArchitectureAdapter, calibration: Calibration, progress: ProgressFn = no_progress
) -> dict[int, torch.Tensor]:
    """Mean ``|a_n|`` over every calibration token, per layer ``[d_mlp]``."""
    with summed_activations(adapter, _abs_sum) as sums:
        tokens = run_calibration(adapter.model, calibration, progress)
    return {layer: sums[layer].float() / tokens for layer in range(adapter.n_layers)}


def seeded_random_scores(
    adapter: ArchitectureAdapter, calibration: Calibration = Calibration(), progress: ProgressFn = no_progress
) -> dict[int, torch.Tensor]:
    """The random baseline: uniform scores ``[d_mlp]`` per layer, seeded by ``calibration.seed``."""
    return random_scores({layer: adapter.d_mlp(layer) for layer in range(adapter.n_layers)}, calibration.seed)


@dataclass(frozen=True)
class Scorer:
    """A scoring method: ``score(adapter, calibration, progress) -> {layer: [d_mlp]}``.

    ``calibrated``: reads ``calibration.sequences`` (else they are ignored); ``seeded``: reads
    ``calibration.seed``.
    """

    score: ScoreFn
    calibrated: bool
    seeded: bool = False

    def __call__(self, adapter: ArchitectureAdapter, calibration: Calibration, progress: ProgressFn = no_progress) -> dict[int, torch.Tensor]:
        return self.score(adapter, calibration, progress)

    def key(self, calibration: Calibration) -> tuple:
        """What the scores depend on besides the model: the calibration ids, the seed, or nothing."""
        return (calibration.digest() if self.calibrated else None, calibration.seed if self.seeded else None)


SCORERS: Mapping[str, Scorer] = {
    "magnitude": Scorer(magnitude_scores, calibrated=False),
    "wanda": Scorer(wanda_scores, calibrated=True),
    "activation": Scorer(activation_scores, calibrated=True),
    "taylor": Scorer(taylor_scores, calibrated=True),
    "obs": Scorer(obs_scores, calibrated=True),
    "random": Scorer(seeded_random_scores, calibrated=False, seeded=True),
}
SCORE_METHODS = tuple(SCORERS)
"""Every scoring method's name, in the order the API lists them."""
CALIBRATED_METHODS = frozenset(name for name, scorer in SCORERS.items() if scorer.calibrated)


def _square_sum(x: torch.Tensor) -> torch.Tensor:
    return x.double().square().sum(dim=0)


def _abs_sum(x: torch.Tensor) -> torch.Tensor:
    return x.double().abs().sum(dim=0)


@contextmanager
def summed_inputs(
    modules: Mapping[Hashable, nn.Module], reduce: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[dict[Hashable, torch.Tensor]]:
    """Sum ``reduce(x)`` over every forward, ``x`` = a module's input as ``[tokens, features]``."""
    sums: dict[Hashable, torch.Tensor] = {}

    def accumulate(key: Hashable) -> Callable:
        def hook(_module: nn.Module, args: tuple) -> None:
            x = args[0].detach()
            value = reduce(x.reshape(-1, x.shape[-1]))
            sums[key] = sums[key] + value if key in sums else value

        return hook

    with ExitStack() as stack:
        for key, module in modules.items():
            stack.enter_context(forward_pre_hook(module, accumulate(key)))
        yield sums


@contextmanager
def summed_activations(
    adapter: ArchitectureAdapter, reduce: Callable[[torch.Tensor], torch.Tensor]
) -> Iterator[dict[int, torch.Tensor]]:
    """Sum ``reduce(a)`` over every forward, ``a`` = each layer's activations as ``[tokens, d_mlp]``."""
    sums: dict[int, torch.Tensor] = {}

    def accumulate(layer: int, acts: torch.Tensor) -> None:
        value = reduce(acts.detach().reshape(-1, acts.shape[-1]))
        sums[layer] = sums[layer] + value if layer in sums else value

    with activation_hooks(adapter, range(adapter.n_layers), accumulate):
        yield sums


@dataclass(frozen=True)
class LayerRanking:
    """A layer's neurons ranked by score. Tensors are ``[d_mlp]``."""

    ranks: torch.Tensor
    cutoff: float
    is_candidate: torch.Tensor
    pruning_score: torch.Tensor


def rank_layer(scores: torch.Tensor, threshold: float) -> LayerRanking:
    """Rank ``scores`` ``[d_mlp]`` ascending and mark candidates at the ``threshold``-th percentile.

    ``ranks`` are 1-based (ties by neuron index); ``cutoff`` is the percentile with linear
    interpolation (numpy's default); a candidate has ``score <= cutoff``;
    ``pruning_score = 1 - (rank - 1) / (d_mlp - 1)`` (1 = the lowest score, safest).
    """
    values = scores.detach().double().cpu()
    n = values.numel()
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(1, n + 1)
    cutoff = float(torch.quantile(values, threshold / 100.0))
    pruning_score = 1.0 - (ranks - 1).double() / (n - 1) if n > 1 else torch.ones(n, dtype=torch.float64)
    return LayerRanking(ranks=ranks, cutoff=cutoff, is_candidate=values <= cutoff, pruning_score=pruning_score)
