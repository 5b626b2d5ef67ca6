"""Exact ablation sweeps, batched, and the per-neuron importance of a layer.

Each text's clean run is done once; forward pre-hooks (with kwargs) record the inputs of every
block from the first ablated layer on. An ablation is one row of a batch that re-runs only the
blocks from its first ablated layer ``L`` (the prefix up to ``L`` is shared), starting from the
recorded input of block ``L`` repeated along the batch; a pre-hook on each ablated layer's MLP
output projection multiplies its input by a per-row keep-mask (each row ablates its own neurons)
and, for mean ablation, adds the per-row fill. Then the adapter's final norm, and the LM head
only when the logit metrics (KL, loss) are wanted.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator, Mapping, Sequence

import torch
from torch import nn

from neuronscope.analysis.ablation import (
    ActivationMoments,
    ImpactTotals,
    activation_moments,
    hidden_change,
    logit_change,
    next_token_targets,
)
from neuronscope.analysis.forward import run
from neuronscope.analysis.hooks import captured_activations, forward_hook, forward_pre_hook
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter

Ablation = Mapping[int, Sequence[int]]
"""One ablation: layer -> the neuron indices ablated together (several layers allowed)."""

BATCH_TOKENS = 4096
"""Default rows x tokens per downstream batch."""
LOGIT_TOKENS = 256
"""Rows x tokens per LM-head call (bounds the ``[tokens, vocab]`` logits in memory)."""
JACOBIAN_TOKENS = 16
"""Tokens per final-norm Jacobian batch of the attribution estimate."""


@dataclass
class CleanText:
    """One text's clean run.

    ``block_inputs[i]`` = ``(args, kwargs)`` of block ``first + i``; ``final_hidden`` ``[seq, d_model]``;
    ``log_probs`` ``[seq, vocab]`` or ``None``.
    """

    ids: torch.Tensor
    first: int
    block_inputs: list[tuple[tuple, dict]]
    final_hidden: torch.Tensor
    log_probs: torch.Tensor | None

    def block_input(self, layer: int) -> tuple[tuple, dict]:
        return self.block_inputs[layer - self.first]

    def hidden_input(self, layer: int) -> torch.Tensor:
        """The input hidden state ``[1, seq, d_model]`` of block ``layer``."""
        args, kwargs = self.block_input(layer)
        return args[0] if args else kwargs["hidden_states"]


@torch.no_grad()
def clean_run(adapter: ArchitectureAdapter, ids: torch.Tensor, first: int, with_logits: bool = False) -> CleanText:
    """Run ``ids`` ``[1, seq]`` once, recording the inputs of blocks ``first..``."""
    records: list[tuple[tuple, dict]] = []

    def record(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        records.append((args, kwargs))

    with ExitStack() as stack:
        for block in adapter.blocks()[first:]:
            stack.enter_context(forward_pre_hook(block, record, with_kwargs=True))
        result = run(adapter.model, ids)
    log_probs = torch.log_softmax(result.logits.float(), dim=-1) if with_logits else None
    return CleanText(ids, first, records, result.final_hidden, log_probs)


def _call_block(block: nn.Module, hidden: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    """Run ``block`` on ``hidden`` with the recorded other inputs; blocks may return a tensor or a tuple."""
    if args:
        out = block(hidden, *args[1:], **kwargs)
    else:
        out = block(**{**kwargs, "hidden_states": hidden})
    return out[0] if isinstance(out, tuple) else out


@torch.no_grad()
def run_downstream(adapter: ArchitectureAdapter, clean: CleanText, start: int, rows: int) -> torch.Tensor:
    """Final hidden states ``[rows, seq, d_model]`` from block ``start`` on, ``rows`` copies of the clean input."""
    hidden = clean.hidden_input(start).expand(rows, -1, -1)
    blocks = adapter.blocks()
    for layer in range(start, adapter.n_layers):
        args, kwargs = clean.block_input(layer)
        hidden = _call_block(blocks[layer], hidden, args, kwargs)
    return adapter.final_norm()(hidden)


@contextmanager
def row_masks(
    adapter: ArchitectureAdapter, keep: Mapping[int, torch.Tensor], fill: Mapping[int, torch.Tensor] | None = None
) -> Iterator[None]:
    """Per-row ablation: layer L's activations ``[rows, seq, d_mlp]`` become ``a * keep[L] (+ fill[L])``.

    ``keep[L]`` and ``fill[L]`` are ``[rows, d_mlp]``. Projections fed ``[rows * seq, d_mlp]``
    (OPT flattens the batch) are handled by viewing them row-major as ``[rows, seq, d_mlp]``.
    """

    def masker(layer: int):
        def hook(_module: nn.Module, args: tuple) -> tuple:
            mask = keep[layer]
            acts = args[0].reshape(mask.shape[0], -1, mask.shape[1]) * mask.unsqueeze(1)  # [rows, seq, d_mlp]
            if fill is not None:
                acts = acts + fill[layer].unsqueeze(1)
            return (acts.reshape(args[0].shape), *args[1:])

        return hook

    with ExitStack() as stack:
        for layer in keep:
            stack.enter_context(forward_pre_hook(adapter.mlp_output(layer), masker(layer)))
        yield


def _row_chunks(ablations: Sequence[Ablation], per_chunk: int) -> list[tuple[int, list[int]]]:
    """``(start layer, row indices)`` chunks of at most ``per_chunk`` rows sharing a start layer."""
    by_start: dict[int, list[int]] = {}
    for row, ablation in enumerate(ablations):
        by_start.setdefault(min(ablation), []).append(row)
    return [
        (start, rows[i : i + per_chunk])
        for start, rows in sorted(by_start.items())
        for i in range(0, len(rows), per_chunk)
    ]


def _chunk_masks(
    adapter: ArchitectureAdapter,
    ablations: Sequence[Ablation],
    rows: list[int],
    means: Mapping[int, torch.Tensor] | None,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor] | None]:
    """Keep-masks (and mean fills) ``[len(rows), d_mlp]`` per layer for one chunk of ablations."""
    keep: dict[int, torch.Tensor] = {}
    for r, row in enumerate(rows):
        for layer, neurons in ablations[row].items():
            if layer not in keep:
                keep[layer] = torch.ones(len(rows), adapter.d_mlp(layer), device=device, dtype=dtype)
            keep[layer][r, list(neurons)] = 0.0
    if means is None:
        return keep, None
    fill = {layer: (1.0 - mask) * means[layer].to(device, dtype) for layer, mask in keep.items()}
    return keep, fill


@torch.no_grad()
def _add_logit_metrics(
    adapter: ArchitectureAdapter, totals: ImpactTotals, rows: torch.Tensor, clean: CleanText, final: torch.Tensor
) -> None:
    """KL and cross-entropy of ``final`` ``[rows, seq, d_model]`` against the clean run, in bounded pieces."""
    step = max(1, LOGIT_TOKENS // final.shape[1])
    targets = next_token_targets(clean.ids)
    for i in range(0, final.shape[0], step):
        logits = adapter.unembed()(final[i : i + step]).float()
        totals.add_logits(rows[i : i + step], *logit_change(clean.log_probs, logits, targets))


@torch.no_grad()
def ablation_sweep(
    adapter: ArchitectureAdapter,
    texts: Sequence[torch.Tensor],
    ablations: Sequence[Ablation],
    *,
    ablation: str = "zero",
    with_logits: bool = False,
    moments: Mapping[int, ActivationMoments] | None = None,
    batch_tokens: int = BATCH_TOKENS,
    progress: ProgressFn = no_progress,
) -> ImpactTotals:
    """Impact metrics of every ablation over ``texts`` (``[1, seq]`` ids each), exactly, batched.

    ``ablation`` is ``zero`` or ``mean``; mean ablation uses ``moments`` of every ablated layer
    (computed here when not given). Returns the pooled sums; ``.results()`` gives the metrics.
    """
    layers = sorted({layer for ablation_ in ablations for layer in ablation_})
    means = None
    if ablation == "mean":
        moments = moments or activation_moments(adapter, texts, layers)
        means = {layer: moments[layer].mean() for layer in layers}
    totals = ImpactTotals(len(ablations), with_logits)
    param = next(adapter.model.parameters())
    done, total_work = 0, len(texts) * len(ablations)
    for t, ids in enumerate(texts):
        clean = clean_run(adapter, ids, layers[0], with_logits)
        totals.add_text(clean.final_hidden, clean.log_probs, ids)
        for start, rows in _row_chunks(ablations, max(1, batch_tokens // ids.shape[1])):
            keep, fill = _chunk_masks(adapter, ablations, rows, means, param.device, param.dtype)
            with row_masks(adapter, keep, fill):
                final = run_downstream(adapter, clean, start, len(rows))
            index = torch.as_tensor(rows)
            totals.add_hidden(index, hidden_change(clean.final_hidden, final))
            if with_logits:
                _add_logit_metrics(adapter, totals, index, clean, final)
            done += len(rows)
            progress(done / total_work, f"text {t + 1}/{len(texts)}: {done}/{total_work} ablations")
    return totals


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
    ablation: str = "zero",
    batch_tokens: int = BATCH_TOKENS,
    progress: ProgressFn = no_progress,
) -> LayerImportance:
    """Every neuron of ``layer`` ablated on its own over ``texts``: exact impact and activation stats."""
    moments = activation_moments(adapter, texts, [layer])
    ablations = [{layer: [n]} for n in range(adapter.d_mlp(layer))]
    totals = ablation_sweep(
        adapter, texts, ablations, ablation=ablation, moments=moments, batch_tokens=batch_tokens, progress=progress
    )
    return LayerImportance(
        activation_magnitude=moments[layer].mean_abs(),
        activation_variance=moments[layer].variance(),
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


def _block_output(output: torch.Tensor | tuple) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


@torch.no_grad()
def _final_norm_push(adapter: ArchitectureAdapter, residual: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """``||J_t v_n||`` ``[seq, n]``: the final norm's Jacobian at each ``residual`` ``[seq, d_model]`` applied to ``directions`` ``[n, d_model]``."""
    jacobian = torch.func.vmap(torch.func.jacfwd(adapter.final_norm()))
    norms = []
    for i in range(0, residual.shape[0], JACOBIAN_TOKENS):
        j = jacobian(residual[i : i + JACOBIAN_TOKENS])  # [tokens, d_out, d_model]
        norms.append(torch.matmul(directions, j.transpose(1, 2)).norm(dim=-1))  # [tokens, n]
    return torch.cat(norms)


@torch.no_grad()
def attribution_importance(
    adapter: ArchitectureAdapter,
    texts: Sequence[torch.Tensor],
    layer: int,
    *,
    ablation: str = "zero",
    progress: ProgressFn = no_progress,
) -> LayerImportance:
    """A one-forward estimate of every neuron's ``impact_score`` in ``layer`` (no ablation run).

    The ablation changes the neuron's direct write to the residual stream by
    ``da_n,t * W_out,n`` (``da = -a`` for zero ablation, ``mean - a`` for mean ablation); this
    pushes that change through the final norm's Jacobian ``J_t`` at each token's last residual
    and ignores how the blocks after ``layer`` react:
    ``impact_n ~= mean_t |da_n,t| * ||J_t W_out,n|| / ||h_t||``. Its rank agreement with exact
    ablation is measured by ``benchmarks/attribution_candidates.py`` (docs/pruning.md).
    """
    moments = activation_moments(adapter, texts, [layer]) if ablation == "mean" else None
    stats = ActivationMoments()
    ratio_sum, tokens = torch.zeros(adapter.d_mlp(layer), dtype=torch.float64), 0
    w_out = adapter.w_out(layer)
    last: list[torch.Tensor] = []
    for i, ids in enumerate(texts):
        with captured_activations(adapter, [layer]) as acts, forward_hook(
            adapter.blocks()[-1], lambda _m, _a, out: last.append(_block_output(out))
        ):
            result = run(adapter.model, ids)
        a = acts[layer][0][0]  # [seq, d_mlp]
        stats.add(a)
        change = (moments[layer].mean().to(a) - a) if moments else -a
        push = _final_norm_push(adapter, last.pop()[0], w_out)  # [seq, d_mlp]
        ratio = change.abs() * push / result.final_hidden.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        ratio_sum += ratio.sum(dim=0).double().cpu()
        tokens += ids.shape[1]
        progress((i + 1) / len(texts), f"attribution: text {i + 1}/{len(texts)}")
    return LayerImportance(
        activation_magnitude=stats.mean_abs(),
        activation_variance=stats.variance(),
        impact_score=ratio_sum / tokens,
    )
