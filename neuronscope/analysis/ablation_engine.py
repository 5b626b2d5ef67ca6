"""The batched ablation engine: exact impact metrics of many ablations, each one row of a batch.

Each text's clean run is done once; forward pre-hooks (with kwargs) record the inputs of every
block from the first ablated layer on. An ablation is one row of a batch that re-runs only the
blocks from its first ablated layer ``L`` (the prefix up to ``L`` is shared), starting from the
recorded input of block ``L`` repeated along the batch; a pre-hook on each ablated layer's MLP
output projection multiplies its input by a per-row keep-mask (each row ablates its own neurons)
and, for mean ablation, adds the per-row fill. Then the adapter's final norm, and the LM head
only when the logit metrics (KL, loss) are wanted.

Block ``L`` itself is the same for every row up to its MLP output projection. When the block's
output moves exactly with that projection's output (a residual add; probed numerically on the
clean run, so nothing here depends on the architecture), each row's block output is
``clean block output + W_out(masked a) - W_out(a)`` and only the blocks after ``L`` run batched;
otherwise (e.g. a norm after the residual add) block ``L`` runs batched too.
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence

import torch
from torch import nn

from neuronscope.analysis.block_runs import MlpRecord, adds_mlp_output, block_output, call_block
from neuronscope.analysis.forward import run
from neuronscope.analysis.hooks import activation_hooks, forward_hook, forward_pre_hook
from neuronscope.analysis.impact import ImpactTotals, hidden_change, logit_change, next_token_targets
from neuronscope.analysis.moments import ActivationMoments, activation_moments
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter
from neuronscope.modeling.placement import input_device

Ablation = Mapping[int, Sequence[int]]
"""One ablation: layer -> the neuron indices ablated together (several layers allowed)."""

BATCH_TOKENS = 4096
"""Rows x tokens per downstream batch when no tuning store is given."""
ROW_TRIALS = (32, 64, 128, 256)
"""Rows per batch tried (in this order, on real work) before a tuned sweep settles on the fastest."""
TRIAL_ROUNDS = 2
"""Rounds of :data:`ROW_TRIALS` timed before the choice (each size keeps its best round)."""
KEEP_CLEAN_TOKENS = 512
"""Tokens of texts whose clean runs a sweep may keep in its store for the next sweep."""
SPARSE_SHARE = 8
"""The start layer's output change is read from the ablated rows of ``W_out`` (the rank-k form)
while no row ablates more than ``d_mlp / SPARSE_SHARE`` of its neurons; else the projection runs."""
LOGIT_TOKENS = 256
"""Rows x tokens per LM-head call (bounds the ``[tokens, vocab]`` logits in memory)."""


@dataclass
class CleanText:
    """One text's clean run.

    ``block_inputs[i]`` = ``(args, kwargs)`` of block ``first + i``; ``final_hidden`` ``[seq, d_model]``;
    ``log_probs`` ``[seq, vocab]`` or ``None``; ``mlp`` the :class:`MlpRecord` of the requested layers.
    """

    ids: torch.Tensor
    first: int
    block_inputs: list[tuple[tuple, dict]]
    final_hidden: torch.Tensor
    log_probs: torch.Tensor | None
    mlp: dict[int, MlpRecord] = field(default_factory=dict)

    def block_input(self, layer: int) -> tuple[tuple, dict]:
        return self.block_inputs[layer - self.first]

    def hidden_input(self, layer: int) -> torch.Tensor:
        """The input hidden state ``[1, seq, d_model]`` of block ``layer``."""
        args, kwargs = self.block_input(layer)
        return args[0] if args else kwargs["hidden_states"]


def _recorder(store: dict, key: int, pick: Callable[[tuple, object], object]) -> Callable:
    def hook(_module: nn.Module, args: tuple, output: object) -> None:
        store[key] = pick(args, output)

    return hook


@torch.no_grad()
def clean_run(
    adapter: ArchitectureAdapter,
    ids: torch.Tensor,
    first: int,
    with_logits: bool = False,
    mlp_layers: Sequence[int] = (),
) -> CleanText:
    """Run ``ids`` ``[1, seq]`` once, recording the inputs of blocks ``first..`` and the MLP outputs of ``mlp_layers``."""
    records: list[tuple[tuple, dict]] = []
    mlp_io: dict[int, tuple] = {}
    block_out: dict[int, torch.Tensor] = {}

    def record(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        records.append((args, kwargs))

    with ExitStack() as stack:
        for block in adapter.blocks()[first:]:
            stack.enter_context(forward_pre_hook(block, record, with_kwargs=True))
        for layer in mlp_layers:
            stack.enter_context(forward_hook(adapter.mlp_output(layer), _recorder(mlp_io, layer, lambda a, o: (a[0], o))))
            stack.enter_context(forward_hook(adapter.blocks()[layer], _recorder(block_out, layer, lambda a, o: block_output(o))))
        result = run(adapter.model, ids)
    seq = ids.shape[1]
    mlp = {
        layer: MlpRecord(mlp_io[layer][0].reshape(1, seq, -1), mlp_io[layer][1].reshape(1, seq, -1), block_out[layer])
        for layer in mlp_layers
    }
    log_probs = torch.log_softmax(result.logits.float(), dim=-1) if with_logits else None
    return CleanText(ids, first, records, result.final_hidden, log_probs, mlp)


def clean_runs(
    adapter: ArchitectureAdapter,
    texts: Sequence[torch.Tensor],
    first: int,
    with_logits: bool = False,
    mlp_layers: Sequence[int] = (),
    store: MutableMapping | None = None,
) -> Iterable[CleanText]:
    """Every text's :func:`clean_run`, one at a time.

    With a ``store`` (the loaded model's memo dict) and at most :data:`KEEP_CLEAN_TOKENS` tokens in
    all, the runs are kept there (the last set only) and reused: the chunks of one layer's sweep
    then share one clean run per text instead of repeating it.
    """
    key = (tuple(tuple(ids[0].tolist()) for ids in texts), first, with_logits, tuple(mlp_layers))
    if store is None or sum(ids.shape[1] for ids in texts) > KEEP_CLEAN_TOKENS:
        return (clean_run(adapter, ids, first, with_logits, mlp_layers) for ids in texts)
    kept = store.get("clean")
    if kept is None or kept[0] != key:
        kept = store["clean"] = (key, [clean_run(adapter, ids, first, with_logits, mlp_layers) for ids in texts])
    return kept[1]


def clean_moments(cleans: Iterable[CleanText], layers: Sequence[int]) -> dict[int, ActivationMoments]:
    """The activation moments of ``layers`` from clean runs that recorded them (no forward pass)."""
    moments = {layer: ActivationMoments() for layer in layers}
    for clean in cleans:
        for layer in layers:
            moments[layer].add(clean.mlp[layer].acts[0])
    return moments


def mlp_output_is_additive(adapter: ArchitectureAdapter, clean: CleanText, layer: int) -> bool:
    """Whether block ``layer``'s output moves exactly with its MLP output (a residual add), probed
    on the clean run (``clean.mlp[layer]`` needed) by :func:`~neuronscope.analysis.block_runs.adds_mlp_output`."""
    return adds_mlp_output(adapter, layer, clean.hidden_input(layer), clean.block_input(layer), clean.mlp[layer])


def _masked(acts: torch.Tensor, keep: torch.Tensor, fill: torch.Tensor | None) -> torch.Tensor:
    """``acts`` viewed as ``[rows, seq, d_mlp]`` (``[1, ...]`` broadcasts) times ``keep`` ``[rows, d_mlp]``, plus ``fill``.

    ``keep`` and ``fill`` move to the device of ``acts`` (with a device map, the layer's device).
    """
    out = acts * keep.to(acts.device).unsqueeze(1)
    return out if fill is None else out + fill.to(acts.device).unsqueeze(1)


@contextmanager
def row_masks(
    adapter: ArchitectureAdapter, keep: Mapping[int, torch.Tensor], fill: Mapping[int, torch.Tensor] | None = None
) -> Iterator[None]:
    """Per-row ablation: layer L's activations ``[rows, seq, d_mlp]`` become ``a * keep[L] (+ fill[L])``.

    ``keep[L]`` and ``fill[L]`` are ``[rows, d_mlp]``. Projections fed ``[rows * seq, d_mlp]``
    (OPT flattens the batch) are handled by viewing them row-major as ``[rows, seq, d_mlp]``.
    """

    def mask(layer: int, acts: torch.Tensor) -> torch.Tensor:
        rows = keep[layer]
        masked = _masked(acts.reshape(rows.shape[0], -1, rows.shape[1]), rows, fill[layer] if fill else None)
        return masked.reshape(acts.shape)

    with activation_hooks(adapter, list(keep), mask):
        yield


@torch.no_grad()
def ablated_final_hidden(
    adapter: ArchitectureAdapter,
    clean: CleanText,
    start: int,
    keep: Mapping[int, torch.Tensor],
    fill: Mapping[int, torch.Tensor] | None = None,
    additive: bool = False,
) -> torch.Tensor:
    """Final hidden states ``[rows, seq, d_model]`` of a chunk of ablations that all start at layer ``start``.

    ``keep``/``fill`` as in :func:`row_masks`. With ``additive`` (see :func:`mlp_output_is_additive`;
    needs ``clean.mlp[start]``) block ``start`` is not re-run: only its output projection is.
    """
    if additive:
        record = clean.mlp[start]
        hidden = record.block_out + _output_change(adapter, start, record, keep[start], fill[start] if fill else None)
        begin = start + 1
    else:
        hidden = clean.hidden_input(start).expand(keep[start].shape[0], -1, -1)
        begin = start
    blocks = adapter.blocks()
    with row_masks(adapter, {layer: mask for layer, mask in keep.items() if layer >= begin}, fill):
        for layer in range(begin, adapter.n_layers):
            args, kwargs = clean.block_input(layer)
            hidden = call_block(blocks[layer], hidden, args, kwargs)
    return adapter.final_norm()(hidden).to(clean.final_hidden.device)


def _output_change(
    adapter: ArchitectureAdapter, layer: int, record: MlpRecord, keep: torch.Tensor, fill: torch.Tensor | None
) -> torch.Tensor:
    """``W_out(a') - W_out(a)`` ``[rows, seq, d_model]`` at ``layer``, ``a'`` the masked activations.

    When each row ablates at most ``k`` neurons (few), this is ``sum_j (a'_j - a_j) W_out[j]`` over
    the ablated ``j`` only (the rank-k form; rank 1 for one neuron): ``rows x seq x k x d_model``
    multiply-adds instead of the projection's ``rows x seq x d_mlp x d_model``. The bias cancels.
    """
    acts = record.acts  # [1, seq, d_mlp]
    keep = keep.to(acts.device)
    ablated = keep == 0  # [rows, d_mlp]
    k = int(ablated.sum(dim=1).max())
    if k * SPARSE_SHARE > keep.shape[1]:
        masked = _masked(acts, keep, fill)  # [rows, seq, d_mlp]
        return adapter.mlp_output(layer)(masked) - record.out
    index = torch.topk(ablated.to(acts.dtype), k, dim=1).indices  # [rows, k]; a non-ablated pick changes nothing
    change = (keep.gather(1, index) - 1.0).unsqueeze(-1) * acts[0].T[index]  # [rows, k, seq]
    if fill is not None:
        change = change + fill.to(acts.device).gather(1, index).unsqueeze(-1)
    w_out = adapter.w_out(layer).to(acts.device)  # [d_mlp, d_model]
    return change.transpose(1, 2) @ w_out[index]  # [rows, seq, k] @ [rows, k, d_model]


def _starts(ablations: Sequence[Ablation]) -> dict[int, list[int]]:
    """Row indices of ``ablations`` by start layer (their first ablated layer), in layer order."""
    by_start: dict[int, list[int]] = {}
    for row, ablation in enumerate(ablations):
        by_start.setdefault(min(ablation), []).append(row)
    return dict(sorted(by_start.items()))


@dataclass
class RowTuning:
    """Rows per batch for one text length, chosen by measurement.

    The first batches try each of :data:`ROW_TRIALS` in turn, :data:`TRIAL_ROUNDS` rounds (their
    results count like any other), then every batch uses the size with the least time per row
    and block run, each size judged by its best round (one timing on a loaded machine can be off
    by 2x). The best size follows the matmuls' rows (rows x tokens), not the number of blocks, so
    one plan serves every start layer: a whole-model sweep tunes once, not once per layer. Kept in
    a tuning store (the loaded model's memo), so a model tunes each length once.
    """

    seconds_per_row: dict[int, float] = field(default_factory=dict)
    """Best seconds per row and block, by rows per batch."""
    rounds: dict[int, int] = field(default_factory=dict)

    def rows(self) -> int:
        done = min(self.rounds.get(size, 0) for size in ROW_TRIALS)
        if done < TRIAL_ROUNDS:
            return next(size for size in ROW_TRIALS if self.rounds.get(size, 0) == done)
        return min(self.seconds_per_row, key=self.seconds_per_row.__getitem__)

    def record(self, size: int, rows: int, seconds: float) -> None:
        """Count a batch of ``rows`` run with ``size`` asked, ``seconds`` per block (a short last batch says nothing)."""
        if rows == size and self.rounds.get(size, 0) < TRIAL_ROUNDS:
            self.rounds[size] = self.rounds.get(size, 0) + 1
            self.seconds_per_row[size] = min(self.seconds_per_row.get(size, float("inf")), seconds / rows)


class _Batches:
    """Rows per batch: fixed (``batch_tokens // seq``) or tuned through a store shared across sweeps."""

    def __init__(self, adapter: ArchitectureAdapter, batch_tokens: int, store: MutableMapping | None):
        self.n_layers, self.batch_tokens, self.store = adapter.n_layers, batch_tokens, store

    def plan(self, start: int, seq: int) -> RowTuning | None:
        if self.store is None:
            return None
        key = ("rows", seq)
        if key not in self.store:
            self.store[key] = RowTuning()
        return self.store[key]

    def chunks(self, start: int, rows: list[int], seq: int) -> Iterator[list[int]]:
        """``rows`` in batches; a tuned plan times each batch (per block from ``start`` on) from its hand-out to the next request."""
        plan, i = self.plan(start, seq), 0
        while i < len(rows):
            size = plan.rows() if plan else max(1, self.batch_tokens // seq)
            chunk = rows[i : i + size]
            began = time.perf_counter()
            yield chunk
            if plan:
                plan.record(size, len(chunk), (time.perf_counter() - began) / (self.n_layers - start))
            i += size


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
        logits = adapter.unembed()(final[i : i + step]).float().to(clean.log_probs.device)
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
    store: MutableMapping | None = None,
    progress: ProgressFn = no_progress,
) -> ImpactTotals:
    """Impact metrics of every ablation over ``texts`` (``[1, seq]`` ids each), exactly, batched.

    ``ablation`` is ``zero`` or ``mean``; mean ablation uses ``moments`` of every ablated layer
    (computed here when not given). Batches hold ``batch_tokens`` rows x tokens; given a ``store``
    (a dict kept with the loaded model, e.g. in its memo), they hold the measured best rows per
    batch for each shape (:class:`RowTuning`) and the clean runs are shared with the next sweep
    on the same texts (:func:`clean_runs`). Returns the pooled sums; ``.results()`` gives the metrics.
    """
    layers = sorted({layer for ablation_ in ablations for layer in ablation_})
    means = None
    if ablation == "mean":
        moments = moments or activation_moments(adapter, texts, layers)
        means = {layer: moments[layer].mean() for layer in layers}
    totals = ImpactTotals(len(ablations), with_logits)
    device, dtype = input_device(adapter.model), next(adapter.model.parameters()).dtype
    by_start = _starts(ablations)
    starts = list(by_start)
    batches = _Batches(adapter, batch_tokens, store)
    additive: dict[int, bool] = {}
    done, total_work = 0, len(texts) * len(ablations)
    cleans = clean_runs(adapter, texts, layers[0], with_logits, layers, store)
    for t, (ids, clean) in enumerate(zip(texts, cleans)):
        additive = additive or {start: mlp_output_is_additive(adapter, clean, start) for start in starts}
        totals.add_text(clean.final_hidden, clean.log_probs, ids)
        for start, rows in ((start, chunk) for start in starts for chunk in batches.chunks(start, by_start[start], ids.shape[1])):
            keep, fill = _chunk_masks(adapter, ablations, rows, means, device, dtype)
            final = ablated_final_hidden(adapter, clean, start, keep, fill, additive[start])
            index = torch.as_tensor(rows)
            totals.add_hidden(index, hidden_change(clean.final_hidden, final))
            if with_logits:
                _add_logit_metrics(adapter, totals, index, clean, final)
            done += len(rows)
            progress(done / total_work, f"text {t + 1}/{len(texts)}: {done}/{total_work} ablations")
    return totals
