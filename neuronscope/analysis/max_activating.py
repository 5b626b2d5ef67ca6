"""Max-activating examples: the top token positions of every neuron over many texts.

A token position is referenced as ``(sequence, position)``: the index of its text among the
texts indexed together and its position in that text's token ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from neuronscope.analysis.activations import forward_padded, pad_right
from neuronscope.analysis.hooks import activation_hooks
from neuronscope.analysis.neuron_stats import LayerStats, RunningStats, RunningTokenSums, TokenSums
from neuronscope.analysis.neuron_view import EXAMPLES, WINDOW, window_bounds
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter
from neuronscope.modeling.placement import input_device

_POSITION_BITS = 32
MAX_PADDING = 0.1  # padded positions a batch may add, as a fraction of its real tokens

WindowFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(rows [m], neurons [m]) -> [m, WINDOW]``: the activation windows of neurons at kept positions ``rows``."""


def token_refs(sequence: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """One int64 reference per token position (sequence index in the high bits, position in the low)."""
    return (sequence.long() << _POSITION_BITS) | positions.long()


@dataclass(frozen=True)
class TopList:
    """The top positions of every neuron of one layer, best first.

    ``values``, ``sequences``, ``positions``: ``[d_mlp, k]`` numpy arrays (``k`` <= depth);
    ``windows``: ``[d_mlp, min(k, EXAMPLES), WINDOW]`` float32, the first ``EXAMPLES`` entries'
    signed activations over their example windows
    (:func:`~neuronscope.analysis.neuron_view.window_bounds`), NaN past a window's end; None when
    the pass kept no windows.
    """

    values: np.ndarray
    sequences: np.ndarray
    positions: np.ndarray
    windows: np.ndarray | None = None

    def padded_windows(self) -> np.ndarray:
        """The windows ``[d_mlp, k, WINDOW]``, NaN for the entries past the first ``EXAMPLES`` (all, without windows)."""
        padded = np.full(self.values.shape + (WINDOW,), np.nan, dtype=np.float32)
        if self.windows is not None:
            padded[:, : self.windows.shape[1]] = self.windows
        return padded


class TopActivations:
    """The running top-``depth`` activations of every neuron of one layer, with their token references.

    While the lists fill, every batch is reduced to its own top ``depth`` and merged. Once they
    are full, an activation can only enter a neuron's list if it beats the list's last value, so
    a batch is only compared with those thresholds and the few activations above are kept aside,
    one row per neuron; they are merged into the lists (raising the thresholds) once the rows
    kept aside are ``depth`` wide, and before the result is read. Most activations are thus
    compared once and never sorted.

    With ``windowed``, the first ``EXAMPLES`` entries of a list also carry their activation
    windows (``[WINDOW]``, see :class:`TopList`), so the examples can be shown without running the
    model again. A window can only be read while its batch's activations exist, so windowed
    lists merge each batch's candidates at once, in a total order (activation, then token
    reference: sequence, then position — the index's own order, whatever order the length
    batches come in), so an entry never moves ahead of one that was ahead of it: an entry past
    the first ``EXAMPLES`` never comes back. Only the windows of the candidates that enter the
    first ``EXAMPLES`` are gathered.
    """

    def __init__(self, d_mlp: int, depth: int, device: torch.device | str, *, windowed: bool = False):
        self.depth = depth
        self.values = torch.empty((d_mlp, 0), device=device)  # [d_mlp, <=depth], descending
        self.refs = torch.empty((d_mlp, 0), dtype=torch.long, device=device)  # [d_mlp, <=depth]
        self.windows = torch.empty((d_mlp, 0, WINDOW), device=device) if windowed else None  # [d_mlp, <=EXAMPLES, WINDOW]
        self.pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (values, refs) [d_mlp, width] each
        self.pending_width = 0

    def update(self, acts: torch.Tensor, refs: torch.Tensor, windows_of: WindowFn | None = None) -> None:
        """Merge ``acts`` ``[n, d_mlp]`` observed at the token references ``refs`` ``[n]`` (moved to
        this list's device); ``windows_of`` gives the windows of entries when ``windowed``."""
        if acts.shape[0] == 0:
            return
        acts = acts.to(self.values.device).float()
        if self.values.shape[1] < self.depth:
            batch = acts.T.topk(min(self.depth, acts.shape[0]), dim=1)  # [d_mlp, k]
            values, rows = batch.values, batch.indices
        else:
            values, rows = _above(acts, self.values[:, -1])  # [d_mlp, width] each
        if self.windows is not None:
            self._merge_windowed(values, rows, refs, windows_of)
        elif self.values.shape[1] < self.depth:
            self._merge([values], [refs[rows]])
        elif values.shape[1]:
            self.pending.append((values, refs[rows]))
            self.pending_width += values.shape[1]
            if self.pending_width >= self.depth:
                self._merge_pending()

    def _merge_pending(self) -> None:
        """Merge the rows kept aside into the lists and start a new set."""
        values, refs = zip(*self.pending)
        self.pending, self.pending_width = [], 0
        self._merge(values, refs)

    def _merge(self, values: Sequence[torch.Tensor], refs: Sequence[torch.Tensor]) -> None:
        """Merge rows of candidates ``values`` with their ``refs`` (``[d_mlp, width]`` each) into the lists."""
        values = torch.cat([self.values, *values], dim=1)
        best = values.topk(min(self.depth, values.shape[1]), dim=1)
        self.values = best.values
        self.refs = torch.cat([self.refs, *refs], dim=1).gather(1, best.indices)

    def _merge_windowed(self, values: torch.Tensor, rows: torch.Tensor, refs: torch.Tensor, windows_of: WindowFn) -> None:
        """Merge one batch's candidates ``values`` at kept positions ``rows`` (``[d_mlp, width]``)
        into the lists, gathering the windows of those that enter the first ``EXAMPLES``."""
        if not values.shape[1]:
            return
        old, shown = self.values.shape[1], self.windows.shape[1]
        by_ref = torch.argsort(torch.cat([self.refs, refs[rows]], dim=1), dim=1)  # refs differ within a list
        ranked = torch.sort(torch.cat([self.values, values], dim=1).gather(1, by_ref), dim=1, descending=True, stable=True)
        k = min(self.depth, ranked.values.shape[1])
        order = by_ref.gather(1, ranked.indices[:, :k])  # [d_mlp, k]: by value, ties by (sequence, position)
        entering = order >= old
        batch_rows = rows.gather(1, (order - old).clamp(min=0))  # [d_mlp, k]
        kept = order.clamp(max=max(old - 1, 0))
        self.refs = torch.where(entering, refs[batch_rows], self.refs.gather(1, kept) if old else 0)
        self.values = ranked.values[:, :k]
        first = min(k, EXAMPLES)
        head, entering, batch_rows = order[:, :first], entering[:, :first], batch_rows[:, :first]
        stored = head.clamp(max=max(shown - 1, 0))[..., None].expand(-1, -1, WINDOW)  # where a kept entry's window is
        if first == shown:  # rewrite, in place, the rows whose first entries changed
            moved = (head != torch.arange(first, device=head.device)).any(dim=1)  # [d_mlp]
            self.windows[moved] = self.windows[moved].gather(1, stored[moved])
        else:
            grown = torch.empty((head.shape[0], first, WINDOW), device=self.values.device)
            grown[:, :shown] = self.windows
            self.windows = grown.gather(1, stored) if shown else grown
        neurons, slots = torch.nonzero(entering, as_tuple=True)
        self.windows[neurons, slots] = windows_of(batch_rows[neurons, slots], neurons).to(self.windows.device)

    def result(self) -> TopList:
        if self.pending:
            self._merge_pending()
        refs = self.refs.cpu().numpy()
        return TopList(
            values=self.values.cpu().numpy(),
            sequences=refs >> _POSITION_BITS,
            positions=refs & ((1 << _POSITION_BITS) - 1),
            windows=self.windows.cpu().numpy() if self.windows is not None else None,
        )


def _above(acts: torch.Tensor, thresholds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per neuron, the activations above its threshold, packed to the left of a row.

    ``acts``: ``[n, d_mlp]``, ``thresholds``: ``[d_mlp]``. Returns values and their rows of
    ``acts`` ``[d_mlp, width]``, ``width`` the most any neuron has; the rest of a row is -inf at
    row 0, which never enters a full list (its values are finite). The few hits are found token
    by token and then grouped by neuron (cheaper than transposing the comparison).
    """
    d_mlp = acts.shape[1]
    flat = _true_positions((acts > thresholds).view(-1))  # [c], token-major
    tokens, neurons = flat // d_mlp, flat % d_mlp
    order = torch.argsort(neurons, stable=True)
    tokens, neurons = tokens[order], neurons[order]
    counts = torch.bincount(neurons, minlength=d_mlp)  # [d_mlp]
    slots = torch.arange(len(neurons), device=acts.device) - (torch.cumsum(counts, dim=0) - counts)[neurons]
    values = torch.full((d_mlp, int(counts.max()) if len(neurons) else 0), float("-inf"), device=acts.device)
    rows = torch.zeros(values.shape, dtype=torch.long, device=acts.device)
    values[neurons, slots] = acts[tokens, neurons]
    rows[neurons, slots] = tokens
    return values, rows


def _true_positions(mask: torch.Tensor) -> torch.Tensor:
    """Positions of the True entries of the flat bool ``mask`` ``[m]``, ascending, for a sparse
    mask: its 8-byte words that are not zero first, then the bytes inside them (about 4x faster
    than ``nonzero`` over every byte when few are True)."""
    if mask.numel() % 8 or not mask.numel():
        return torch.nonzero(mask, as_tuple=True)[0]
    words = torch.nonzero(mask.view(torch.int64), as_tuple=True)[0]  # [w]
    rows, bytes_in = torch.nonzero(mask.view(-1, 8)[words], as_tuple=True)
    return words[rows] * 8 + bytes_in


def top_from_activations(layers: Sequence[torch.Tensor], indexable: torch.Tensor, depth: int) -> list[TopList]:
    """Top-``depth`` positions per neuron of one text whose activations are already known.

    ``layers``: per layer ``[seq, d_mlp]``; ``indexable``: ``[seq]`` bool, False for positions to leave out.
    """
    positions = torch.nonzero(indexable.cpu(), as_tuple=True)[0]
    results = []
    for acts in layers:
        top = TopActivations(acts.shape[1], depth, acts.device)
        refs = token_refs(torch.zeros_like(positions), positions).to(acts.device)
        top.update(acts[positions.to(acts.device)], refs)
        results.append(top.result())
    return results


class LayerRecorder:
    """What one indexing pass gathers from one layer's activations at the indexable positions:
    the top list, and with ``full`` the bottom list (most negative first), both with their
    activation windows, the running statistics and, when ``token_rows`` > 0, the per-token sums
    (see :mod:`neuronscope.analysis.neuron_stats`)."""

    def __init__(self, d_mlp: int, depth: int, device: torch.device | str, *, full: bool = False, token_rows: int = 0):
        self.top = TopActivations(d_mlp, depth, device, windowed=full)
        self.bottom = TopActivations(d_mlp, depth, device, windowed=True) if full else None
        self.stats = RunningStats(d_mlp, device) if full else None
        self.tokens = RunningTokenSums(token_rows, d_mlp, device) if full and token_rows else None

    def statistics(self) -> LayerStats:
        """The running statistics, their minimum and maximum the first entries of the exact tails."""
        top, bottom = self.top.values, self.bottom.values  # [d_mlp, k]
        if top.shape[1] == 0:
            return self.stats.result(np.full(top.shape[0], np.inf), np.full(top.shape[0], -np.inf))
        return self.stats.result(-bottom[:, 0].cpu().numpy(), top[:, 0].cpu().numpy())

    def update(self, acts: torch.Tensor, batch: dict, windows_of: WindowFn) -> None:
        """Record ``acts`` ``[n, d_mlp]`` at the batch's token references (``refs``, ``rows``, ``halves`` ``[n]``)."""
        self.top.update(acts, batch["refs"], windows_of)
        if self.bottom is not None:
            self.bottom.update(-acts, batch["refs"], windows_of)
            self.stats.update(acts)
        if self.tokens is not None:
            self.tokens.update(acts, batch["rows"], batch["halves"])


def _recorder(recorders: Sequence[LayerRecorder], batch: dict) -> Callable[[int, torch.Tensor], None]:
    """An activation hook passing a layer's activations ``[batch * seq, d_mlp]`` at the batch's ``kept`` flat positions to its recorder
    (hooked as ``[batch, seq, d_mlp]``, or already flat where the architecture flattens them: OPT)."""

    def hook(layer: int, acts: torch.Tensor) -> None:
        acts = acts.reshape(-1, acts.shape[-1])

        def windows_of(rows: torch.Tensor, neurons: torch.Tensor) -> torch.Tensor:
            return gather_windows(acts, batch["starts"], batch["spans"], rows, neurons)

        recorders[layer].update(acts.index_select(0, batch["kept"].to(acts.device)), batch, windows_of)

    return hook


def gather_windows(
    acts: torch.Tensor, starts: torch.Tensor, spans: torch.Tensor, rows: torch.Tensor, neurons: torch.Tensor
) -> torch.Tensor:
    """``[m, WINDOW]`` float32: neuron ``neurons[i]``'s activations over the window of kept position ``rows[i]``.

    ``acts``: ``[batch * seq, d_mlp]``; ``starts`` ``[n]``: each kept position's window start as a
    flat position of ``acts``; ``spans`` ``[n]``: its length (<= ``WINDOW``). Past a window's end: NaN.
    """
    device = acts.device
    rows, neurons = rows.to(device), neurons.to(device)
    offsets = torch.arange(WINDOW, device=device)
    flat = (starts.to(device)[rows, None] + offsets).clamp(max=acts.shape[0] - 1)  # [m, WINDOW]
    values = acts[flat, neurons[:, None]].float()
    return values.masked_fill(offsets >= spans.to(device)[rows, None], float("nan"))


def length_batches(lengths: Sequence[int], batch_size: int, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """The indices of texts of ``lengths`` in batches of at most ``batch_size``, shortest texts first.

    A batch also ends before a text that would make padding the batch to its longest text add
    more than ``max_padding`` times its real tokens: padded positions cost as much as real ones.
    """
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        padded = (len(current) + 1) * lengths[i]
        if current and (len(current) == batch_size or padded > (1 + max_padding) * (real + lengths[i])):
            batches.append(current)
            current, real = [], 0
        current.append(i)
        real += lengths[i]
    return batches + [current] if current else batches


@dataclass(frozen=True)
class IndexPass:
    """Per layer, what :func:`index_pass` gathered: ``tops``; ``bottoms`` (values negated: the
    most negative activations first, as their negations best first), ``stats`` and ``tokens``
    (per-token sums, when token rows were given)."""

    tops: list[TopList]
    bottoms: list[TopList]
    stats: list[LayerStats]
    tokens: list[TokenSums] | None


def max_activating(
    model: nn.Module,
    adapter: ArchitectureAdapter,
    sequences: Sequence[Sequence[int]],
    indexable: Sequence[Sequence[bool]],
    *,
    pad_id: int,
    depth: int,
    batch_size: int,
    progress: ProgressFn = no_progress,
) -> list[TopList]:
    """Top-``depth`` (sequence, position) per neuron of every layer over ``sequences``, in padded batches.

    Texts are grouped by length, at most ``batch_size`` per batch and with at most
    ``MAX_PADDING`` padding (see :func:`length_batches`). Padding and positions whose
    ``indexable`` flag is False never enter the lists. Returns one :class:`TopList` per layer.
    """
    recorders = [LayerRecorder(adapter.d_mlp(layer), depth, input_device(model)) for layer in range(adapter.n_layers)]
    _run(model, adapter, sequences, indexable, recorders, pad_id=pad_id, batch_size=batch_size, progress=progress)
    return [recorder.top.result() for recorder in recorders]


def index_pass(
    model: nn.Module,
    adapter: ArchitectureAdapter,
    sequences: Sequence[Sequence[int]],
    indexable: Sequence[Sequence[bool]],
    *,
    pad_id: int,
    depth: int,
    batch_size: int,
    rows: Sequence[Sequence[int]] | None = None,
    halves: Sequence[int] | None = None,
    token_rows: int = 0,
    progress: ProgressFn = no_progress,
) -> IndexPass:
    """:func:`max_activating` plus, over the indexable positions, the bottom lists, the exact
    statistics and, with ``rows`` (per sequence, each token's table row, ``token_rows`` rows in
    all) and ``halves`` (per sequence, 0 or 1), the per-token sums of every neuron."""
    device = input_device(model)
    tokens = token_rows if rows is not None else 0
    recorders = [
        LayerRecorder(adapter.d_mlp(layer), depth, device, full=True, token_rows=tokens) for layer in range(adapter.n_layers)
    ]
    extras = (rows, halves) if tokens else None
    _run(model, adapter, sequences, indexable, recorders, pad_id=pad_id, batch_size=batch_size, extras=extras, progress=progress)
    return IndexPass(
        tops=[r.top.result() for r in recorders],
        bottoms=[r.bottom.result() for r in recorders],
        stats=[r.statistics() for r in recorders],
        tokens=[r.tokens.result() for r in recorders] if tokens else None,
    )


def _run(
    model: nn.Module,
    adapter: ArchitectureAdapter,
    sequences: Sequence[Sequence[int]],
    indexable: Sequence[Sequence[bool]],
    recorders: Sequence[LayerRecorder],
    *,
    pad_id: int,
    batch_size: int,
    extras: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
    progress: ProgressFn,
) -> None:
    """Run ``sequences`` in padded batches with one recorder per layer on its MLP output projection."""
    device = input_device(model)
    batches = length_batches([len(seq) for seq in sequences], batch_size)
    total = sum(len(seq) for seq in sequences)
    done = 0
    progress(0.0, f"indexing {len(sequences)} texts ({total} tokens) in {len(batches)} batches")
    batch: dict = {}
    with activation_hooks(adapter, range(len(recorders)), _recorder(recorders, batch)):
        for number, members in enumerate(batches, start=1):
            ids, mask = pad_right([sequences[i] for i in members], pad_id, device)
            keep, _ = pad_right([indexable[i] for i in members], 0, device)
            keep = keep.bool() & mask
            kept = torch.nonzero(keep.view(-1), as_tuple=True)[0]  # flat positions [n]
            row, position = kept // ids.shape[1], kept % ids.shape[1]
            starts, ends = window_bounds(mask.sum(dim=1)[row], position)
            batch.update(
                kept=kept, refs=token_refs(torch.as_tensor(members, device=device)[row], position),
                starts=row * ids.shape[1] + starts, spans=ends - starts,
            )
            if extras is not None:
                table_rows, _ = pad_right([extras[0][i] for i in members], 0, device)
                batch.update(rows=table_rows.view(-1)[kept], halves=torch.as_tensor([extras[1][i] for i in members], device=device)[row])
            forward_padded(model, ids, mask)
            done += int(mask.sum())
            progress(done / total, f"indexed batch {number}/{len(batches)} ({done} of {total} tokens)")
