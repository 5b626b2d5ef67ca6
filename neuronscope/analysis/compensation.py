"""Compensation after removing MLP neurons: what the removed neurons contributed, put back.

``none``: the neurons are simply gone. ``bias``: each removed neuron's mean contribution over the
calibration tokens, ``mean(a_n) * W_out[n]``, is added to the output projection's bias (FLAP's
fluctuation-free baseline, the same as mean-ablating the neuron). ``reconstruct``: the kept rows of
``W_out`` and the bias are re-fitted by ridge least squares, layer by layer on the pruned model's own
inputs, to reproduce the dense layer's output; the regulariser is chosen on held-out calibration
tokens and the fit is used only where it beats ``bias`` there (docs/compression.md has the maths).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import torch

from neuronscope.analysis.block_runs import StopForward, layer_by_layer
from neuronscope.analysis.hooks import activation_hooks
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
    ``reconstruct``, the output projection's output without its bias ``[tokens, d_model]``, computed
    in float64 and kept in float32 (the precision the model itself computes it in; half the memory,
    which bounds how much calibration text a refit can use)."""

    mean: torch.Tensor
    output: torch.Tensor | None


@torch.no_grad()
def each_sequence(
    adapter: ArchitectureAdapter,
    sequences: Sequence[torch.Tensor],
    layers: Sequence[int],
    consume: Callable[[dict[int, torch.Tensor]], None],
) -> None:
    """Run each 1-D sequence and give ``consume`` the activations ``{layer: [seq, d_mlp]}`` (float64,
    CPU) of ``layers``; the blocks after the last of them (and the LM head) are not run.

    Each hooked activation is ``[1, seq, d_mlp]``, or ``[seq, d_mlp]`` where the architecture flattens (OPT).
    """
    last, seen = max(layers), {}

    def record(layer: int, acts: torch.Tensor) -> None:
        seen[layer] = acts.reshape(-1, acts.shape[-1]).double().cpu()
        if layer == last:
            raise StopForward

    with activation_hooks(adapter, layers, record):
        for seq in sequences:
            seen.clear()
            try:
                adapter.model(input_ids=seq[None], use_cache=False)
            except StopForward:
                pass
            consume(dict(seen))


def dense_layers(
    adapter: ArchitectureAdapter, sequences: Sequence[torch.Tensor], layers: Sequence[int], with_outputs: bool
) -> dict[int, DenseLayer]:
    """:class:`DenseLayer` of each of ``layers`` of the (unpruned) model of ``adapter``, accumulated
    sequence by sequence (the activations of every layer are never held at once)."""
    layers = list(layers)
    w_out = {layer: adapter.w_out(layer).double().cpu() for layer in layers} if with_outputs else {}
    sums: dict[int, torch.Tensor] = {}
    outputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    count = 0

    def consume(acts: dict[int, torch.Tensor]) -> None:
        nonlocal count
        count += len(acts[layers[0]])
        for layer in layers:
            sums[layer] = sums[layer] + acts[layer].sum(dim=0) if layer in sums else acts[layer].sum(dim=0)
            if with_outputs:
                outputs[layer].append((acts[layer] @ w_out[layer]).float())

    each_sequence(adapter, sequences, layers, consume)
    return {
        layer: DenseLayer(sums[layer] / count, torch.cat(outputs.pop(layer)) if with_outputs else None) for layer in layers
    }


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
        return Moments(
            self.count + other.count,
            self.x_sum + other.x_sum,
            self.y_sum + other.y_sum,
            self.xx + other.xx,
            self.xy + other.xy,
            self.yy + other.yy,
        )

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
    """``W, c`` minimising ``||x W + c - y||^2 + ridge * ||W - w0||^2`` (float64), for any ``ridge``.

    ``x``: ``[tokens, k]``, ``y``: ``[tokens, d_model]``, ``w0``: ``[k, d_model]``; ``c`` is not
    regularised, so it is ``mean(y) - mean(x) W``. The centred Gram matrix ``[k, k]`` and right-hand
    side ``[k, d_model]`` come from the tokens' :class:`Moments`, so each regulariser costs one
    Cholesky solve.
    """

    x_mean: torch.Tensor
    y_mean: torch.Tensor
    gram: torch.Tensor
    rhs: torch.Tensor
    w0: torch.Tensor

    @classmethod
    def of(cls, moments: Moments, w0: torch.Tensor) -> "RidgeProblem":
        """From the sums: ``Xc^T Xc = xx - n m m^T`` and ``Xc^T (Yc - Xc w0) = xy - n m my^T - Xc^T Xc w0``."""
        x_mean, y_mean = moments.x_sum / moments.count, moments.y_sum / moments.count
        gram = moments.xx - moments.count * torch.outer(x_mean, x_mean)
        cross = moments.xy - moments.count * torch.outer(x_mean, y_mean)
        return cls(x_mean, y_mean, gram, cross - gram @ w0, w0)

    def solve(self, ridge: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(W [k, d_model], c [d_model])`` for this ``ridge`` (> 0, or 0 with a positive definite Gram matrix)."""
        eye = torch.eye(self.gram.shape[0], dtype=self.gram.dtype)
        factor = torch.linalg.cholesky(self.gram + ridge * eye)
        weight = self.w0 + torch.cholesky_solve(self.rhs, factor)
        return weight, self.y_mean - self.x_mean @ weight

    @property
    def mean_eigenvalue(self) -> float:
        """The mean eigenvalue of the centred Gram matrix (its trace over ``k``; 1 when it is 0)."""
        return float(self.gram.trace()) / max(self.gram.shape[0], 1) or 1.0


def reconstruct_layer(x: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, bias_offset: torch.Tensor) -> tuple[dict, torch.Tensor | None, torch.Tensor | None]:
    """Choose the regulariser on held-out tokens and compare with ``bias`` there.

    ``x``: the pruned layer's kept activations ``[tokens, k]``; ``y``: the dense layer's output
    without bias ``[tokens, d_model]``; ``w0``: the kept rows of ``W_out`` ``[k, d_model]``;
    ``bias_offset``: what ``bias`` would add ``[d_model]``. Returns the report and, when the fit wins,
    the new weight and the offset to add to the bias (refitted on every token), else ``None, None``.
    """
    held = torch.arange(x.shape[0]) % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
    fitted, tested = Moments.of(x[~held], y[~held]), Moments.of(x[held], y[held])
    fit = RidgeProblem.of(fitted, w0)
    scale = fit.mean_eigenvalue
    bias_error = tested.mean_squared_error(w0, bias_offset)
    errors = {ridge: tested.mean_squared_error(*fit.solve(ridge * scale)) for ridge in RIDGE_SCALES}
    best = min(errors, key=errors.get)
    report = {"held_out_error": {"bias": bias_error, "reconstruct": errors[best]}, "regulariser": best}
    if errors[best] >= bias_error:
        return {**report, "used": "bias"}, None, None
    weight, offset = RidgeProblem.of(fitted + tested, w0).solve(best * scale)
    return {**report, "used": "reconstruct"}, weight, offset


def _compensate_layer(
    dense: ArchitectureAdapter,
    pruned: ArchitectureAdapter,
    layer: int,
    removed: Sequence[int],
    kept: torch.Tensor,
    dense_layer: DenseLayer,
    acts: torch.Tensor | None,
) -> dict:
    """Compensate one layer of ``pruned`` in place; ``acts`` ``[tokens, k]``: its kept neurons'
    activations on the calibration tokens for ``reconstruct`` (``None`` for ``bias``)."""
    offset = removed_contribution(dense, layer, removed, dense_layer.mean)
    report = {"layer_index": layer, "used": "bias"}
    if acts is not None:
        w0 = dense.w_out(layer).double().cpu()[kept]
        fitted, weight, new_offset = reconstruct_layer(acts, dense_layer.output.double(), w0, offset)
        report = {"layer_index": layer, **fitted}
        if weight is not None:
            pruned.set_output_weight(layer, weight.to(pruned.w_out(layer)))
            offset = new_offset
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

    def step(layer: int, acts: torch.Tensor | None) -> None:
        reports.append(_compensate_layer(dense, pruned, layer, removed[layer], kept[layer], layers[layer], acts))
        progress(len(reports) / len(order), f"compensated layer {layer}")

    if compensation == "reconstruct" and order:
        layer_by_layer(pruned, sequences, order, step)
    else:
        for layer in order:
            step(layer, None)
    return reports
