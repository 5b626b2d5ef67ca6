"""Compensation after removing MLP neurons: what the removed neurons contributed, put back.

``none``: the neurons are simply gone. ``bias``: each removed neuron's mean contribution over the
calibration tokens, ``mean(a_n) * W_out[n]``, is added to the output projection's bias (FLAP's
fluctuation-free baseline, the same as mean-ablating the neuron). ``reconstruct``: the kept rows of
``W_out`` and the bias are re-fitted by ridge least squares, layer by layer on the pruned model's own
inputs, to reproduce the dense layer's output: the dense block's output (the residual stream after
it, so each refit also takes up what the earlier pruned layers changed) where the block adds its MLP
output to the residual stream, else the dense MLP output. The regulariser is chosen on held-out
calibration tokens and the fit is used only where it beats ``bias`` there (docs/compression.md has
the maths). Where the architecture cannot have an output bias (Gemma), ``reconstruct`` fits the
kept rows alone, without an offset, and is used only where it beats ``none``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping, Sequence

import torch

from neuronscope.analysis.block_runs import LayerRun, layer_by_layer
from neuronscope.analysis.moments import centred_scale
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter

COMPENSATIONS = ("none", "bias", "reconstruct")
RIDGE_SCALES = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
"""Regularisers tried, as multiples of the mean eigenvalue of the centred activations' Gram matrix."""
HELD_OUT_EVERY = 4
"""Every 4th calibration token is held out to choose the regulariser and to compare with ``bias``."""


@dataclass(frozen=True)
class DenseLayer:
    """A dense layer on the calibration tokens: mean activations ``[d_mlp]`` (float64) and, for
    ``reconstruct``, its :class:`~neuronscope.analysis.block_runs.LayerRun` output ``[tokens,
    d_model]`` (float32, as the model computes it) and whether that is the block's output
    (``residual``) or the MLP output projection's."""

    mean: torch.Tensor
    output: torch.Tensor | None
    residual: bool


def dense_layers(
    adapter: ArchitectureAdapter,
    sequences: Sequence[torch.Tensor],
    layers: Sequence[int],
    with_outputs: bool,
    progress: ProgressFn = no_progress,
) -> dict[int, DenseLayer]:
    """:class:`DenseLayer` of each of ``layers`` of the (unpruned) model of ``adapter``, from one
    pass carried layer by layer (the activations of every layer are never held at once)."""
    found: dict[int, DenseLayer] = {}

    def record(layer: int, run: LayerRun) -> None:
        found[layer] = DenseLayer(run.acts.mean(dim=0), run.output if with_outputs else None, run.residual)
        progress(len(found) / len(layers), f"dense statistics of layer {layer}")

    layers = list(layers)
    layer_by_layer(adapter, sequences, layers, record, changes=False)
    return found


def removed_contribution(dense: ArchitectureAdapter, layer: int, removed: Sequence[int], mean: torch.Tensor) -> torch.Tensor:
    """``sum_n mean(a_n) * W_out[n]`` over the removed neurons ``n``: ``[d_model]`` float64."""
    index = torch.as_tensor(list(removed), dtype=torch.long)
    return mean[index] @ dense.w_out(layer).double().cpu()[index]


def _add_to_bias(pruned: ArchitectureAdapter, layer: int, delta: torch.Tensor) -> None:
    bias = pruned.output_bias(layer)
    with torch.no_grad():
        bias.add_(delta.to(bias))


@dataclass(frozen=True)
class Moments:
    """Sums over tokens of a regression's inputs ``x`` ``[tokens, k]`` and targets ``y``
    ``[tokens, d]`` (float64): ``count``, ``x_sum`` ``[k]``, ``y_sum`` ``[d]``, ``xx = x^T x``
    ``[k, k]``, ``xy = x^T y`` ``[k, d]`` and ``yy = sum y^2``. Everything a ridge fit and its squared
    error need, so the tokens are multiplied out once, however many regularisers are tried."""

    count: int
    x_sum: torch.Tensor
    y_sum: torch.Tensor
    xx: torch.Tensor
    xy: torch.Tensor
    yy: float

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor) -> "Moments":
        return cls(x.shape[0], x.sum(dim=0), y.sum(dim=0), x.T @ x, x.T @ y, float(y.square().sum()))

    def __add__(self, other: "Moments") -> "Moments":
        """The sums over both sets of tokens."""
        return Moments(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def mean_squared_error(self, weight: torch.Tensor, offset: torch.Tensor) -> float:
        """``mean((x W + c - y)^2)`` over these tokens and the ``d`` outputs, from the sums alone:
        ``tr(W^T xx W) - 2 tr(W^T xy) + yy + 2 c.(W^T x_sum) - 2 c.y_sum + count ||c||^2``."""
        total = (
            float((weight * (self.xx @ weight)).sum())
            - 2.0 * float((weight * self.xy).sum())
            + self.yy
            + 2.0 * float(offset @ (weight.T @ self.x_sum))
            - 2.0 * float(offset @ self.y_sum)
            + self.count * float(offset @ offset)
        )
        return max(total, 0.0) / max(self.count * offset.numel(), 1)


@dataclass(frozen=True)
class RidgeProblem:
    """``D, c`` minimising ``||x D + c - e||^2 + ridge * ||D||^2`` (float64), for any ``ridge``: the
    change ``D`` of the kept rows of ``W_out`` and the bias change ``c`` that best reproduce the
    error ``e`` between the dense and the pruned layer.

    ``x``: ``[tokens, k]``, ``e``: ``[tokens, d_model]``, ``D``: ``[k, d_model]``; ``c`` is not
    regularised, so it is ``mean(e) - mean(x) D``. The centred Gram matrix ``[k, k]`` and right-hand
    side ``[k, d_model]`` come from the tokens' :class:`Moments`, so each regulariser costs one
    Cholesky solve.
    """

    x_mean: torch.Tensor
    y_mean: torch.Tensor
    gram: torch.Tensor
    rhs: torch.Tensor
    scale: float
    """The mean eigenvalue of ``gram`` (its trace over ``k``), floored by
    :func:`~neuronscope.analysis.moments.centred_scale`: the unit of the regularisers."""

    @classmethod
    def of(cls, moments: Moments, offset: bool = True) -> "RidgeProblem":
        """From the sums: ``Xc^T Xc = xx - n m m^T`` and ``Xc^T Ec = xy - n m me^T``. Without
        ``offset`` the means are taken as 0: ``c`` stays 0 and ``D`` fits the uncentred sums."""
        x_mean, y_mean = moments.x_sum / moments.count, moments.y_sum / moments.count
        if not offset:
            x_mean, y_mean = torch.zeros_like(x_mean), torch.zeros_like(y_mean)
        gram = moments.xx - moments.count * torch.outer(x_mean, x_mean)
        rhs = moments.xy - moments.count * torch.outer(x_mean, y_mean)
        return cls(x_mean, y_mean, gram, rhs, centred_scale(gram, moments.xx))

    def solve(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(D [k, d_model], c [d_model])`` for this ``ridge`` (> 0, or 0 with a positive definite Gram matrix)."""
        eye = torch.eye(self.gram.shape[0], dtype=self.gram.dtype)
        change = torch.cholesky_solve(self.rhs, torch.linalg.cholesky(self.gram + ridge * eye))
        return change, self.y_mean - self.x_mean @ change


def reconstruct_layer(
    x: torch.Tensor, error: torch.Tensor, bias_offset: torch.Tensor | None
) -> tuple[dict, torch.Tensor | None, torch.Tensor | None]:
    """Choose the regulariser on held-out tokens and compare with ``bias`` there.

    ``x``: the pruned layer's kept activations ``[tokens, k]``; ``error``: the dense layer's output
    minus the pruned layer's ``[tokens, d_model]``; ``bias_offset``: what ``bias`` would add
    ``[d_model]``, or ``None`` where the layer can have no bias (then the fit has no offset and is
    compared with ``none``). Returns the report and, when the fit wins, the change of the kept rows
    of ``W_out`` ``[k, d_model]`` and the offset to add to the bias (refitted on every token; zeros
    without a bias), else ``None, None``.
    """
    baseline = "bias" if bias_offset is not None else "none"
    held = torch.arange(x.shape[0]) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    fitted, tested = Moments.of(x[~held], error[~held]), Moments.of(x[held], error[held])
    fit = RidgeProblem.of(fitted, offset=bias_offset is not None)
    scale = fit.scale
    unchanged = torch.zeros_like(fitted.y_sum) if bias_offset is None else bias_offset
    baseline_error = tested.mean_squared_error(torch.zeros_like(fitted.xy), unchanged)
    errors = {ridge: tested.mean_squared_error(*fit.solve(ridge * scale)) for ridge in RIDGE_SCALES}
    best = min(errors, key=errors.get)
    report = {"held_out_error": {baseline: baseline_error, "reconstruct": errors[best]}, "regulariser": best}
    if errors[best] >= baseline_error:
        return {**report, "used": baseline}, None, None
    change, offset = RidgeProblem.of(fitted + tested, offset=bias_offset is not None).solve(best * scale)
    return {**report, "used": "reconstruct"}, change, offset


def _compensate_layer(
    dense: ArchitectureAdapter,
    pruned: ArchitectureAdapter,
    layer: int,
    removed: Sequence[int],
    kept: torch.Tensor,
    dense_layer: DenseLayer,
    run: LayerRun | None,
) -> dict:
    """Compensate one layer of ``pruned`` in place; ``run``: its :class:`LayerRun` on the
    calibration tokens as pruned so far, for ``reconstruct`` (``None`` for ``bias``). Where
    ``pruned`` cannot have an output bias, only ``reconstruct``'s refit of the kept rows applies."""
    with_bias = pruned.supports_output_bias()
    offset = removed_contribution(dense, layer, removed, dense_layer.mean) if with_bias else None
    report = {"layer_index": layer, "used": "bias" if with_bias else "none"}
    if run is not None:
        if run.residual != dense_layer.residual:
            raise RuntimeError(f"layer {layer} adds its MLP output to the residual stream in one model only")
        error = dense_layer.output.double() - run.output.double()
        fitted, change, new_offset = reconstruct_layer(run.acts, error, offset)
        report = {"layer_index": layer, **fitted, "target": "block_output" if run.residual else "mlp_output"}
        if change is not None:
            w0 = dense.w_out(layer).double().cpu()[kept]
            pruned.set_output_weight(layer, (w0 + change).to(pruned.w_out(layer)))
            offset = new_offset if with_bias else None
    if offset is not None:
        _add_to_bias(pruned, layer, offset)
    return report


@torch.no_grad()
def compensate(
    dense: ArchitectureAdapter,
    pruned: ArchitectureAdapter,
    removed: Mapping[int, Sequence[int]],
    kept: Mapping[int, torch.Tensor],
    compensation: str,
    sequences: Sequence[torch.Tensor],
    layers: Mapping[int, DenseLayer],
    progress: ProgressFn = no_progress,
) -> list[dict]:
    """Apply ``compensation`` to ``pruned`` (``dense`` with ``removed`` gone; ``kept[layer]`` the kept
    indices ``[k]``), in place, layer by layer in order; returns a report per compensated layer.

    ``layers``: :func:`dense_layers` of every layer in ``removed`` (with outputs for ``reconstruct``);
    ``sequences``: the calibration token ids (1-D each) that ``layers`` was measured on. For
    ``reconstruct``, the calibration sequences are carried through ``pruned`` block by block
    (:func:`~neuronscope.analysis.block_runs.layer_by_layer`), so each layer is fitted on the
    inputs of the model pruned and compensated up to it.
    """
    reports: list[dict] = []
    order = [layer for layer in sorted(removed) if len(removed[layer])]

    def step(layer: int, run: LayerRun | None) -> None:
        reports.append(_compensate_layer(dense, pruned, layer, removed[layer], kept[layer], layers[layer], run))
        progress(len(reports) / len(order), f"compensated layer {layer}")

    if compensation == "reconstruct" and order:
        layer_by_layer(pruned, sequences, order, step)
    else:
        for layer in order:
            step(layer, None)
    return reports
