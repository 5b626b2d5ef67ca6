"""Max-activating examples: the top token positions of every neuron over many texts.

A token position is referenced as ``(sequence, position)``: the index of its text among the
texts indexed together and its position in that text's token ids.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from neuronscope.analysis.activations import forward_padded, pad_right
from neuronscope.analysis.hooks import forward_pre_hook
from neuronscope.analysis.progress import ProgressFn, no_progress
from neuronscope.modeling.adapters import ArchitectureAdapter
from neuronscope.modeling.placement import input_device

_POSITION_BITS = 32


def token_refs(sequence: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """One int64 reference per token position (sequence index in the high bits, position in the low)."""
    return (sequence.long() << _POSITION_BITS) | positions.long()


@dataclass(frozen=True)
class TopList:
    """The top positions of every neuron of one layer, best first.

    ``values``, ``sequences``, ``positions``: ``[d_mlp, k]`` numpy arrays (``k`` <= depth).
    """

    values: np.ndarray
    sequences: np.ndarray
    positions: np.ndarray


class TopActivations:
    """The running top-``depth`` activations of every neuron of one layer, with their token references."""

    def __init__(self, d_mlp: int, depth: int, device: torch.device | str):
        self.depth = depth
        self.values = torch.empty((d_mlp, 0), device=device)  # [d_mlp, <=depth]
        self.refs = torch.empty((d_mlp, 0), dtype=torch.long, device=device)  # [d_mlp, <=depth]

    def update(self, acts: torch.Tensor, refs: torch.Tensor) -> None:
        """Merge ``acts`` ``[n, d_mlp]`` observed at the token references ``refs`` ``[n]`` (moved to this list's device)."""
        if acts.shape[0] == 0:
            return
        acts = acts.to(self.values.device)
        batch = acts.T.float().topk(min(self.depth, acts.shape[0]), dim=1)  # [d_mlp, k]
        values = torch.cat([self.values, batch.values], dim=1)
        candidates = torch.cat([self.refs, refs[batch.indices]], dim=1)
        best = values.topk(min(self.depth, values.shape[1]), dim=1)
        self.values = best.values
        self.refs = candidates.gather(1, best.indices)

    def result(self) -> TopList:
        refs = self.refs.cpu().numpy()
        return TopList(
            values=self.values.cpu().numpy(),
            sequences=refs >> _POSITION_BITS,
            positions=refs & ((1 << _POSITION_BITS) - 1),
        )


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


def _recorder(top: TopActivations, batch: dict) -> Callable:
    def hook(_module: nn.Module, args: tuple) -> None:
        acts = args[0]
        top.update(acts[batch["keep"].to(acts.device)], batch["refs"])

    return hook


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

    Texts are grouped by length to keep padding small. Padding and positions whose ``indexable``
    flag is False never enter the lists. Returns one :class:`TopList` per layer.
    """
    device = input_device(model)
    tops = [TopActivations(adapter.d_mlp(layer), depth, device) for layer in range(adapter.n_layers)]
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    total = sum(len(seq) for seq in sequences)
    done = 0
    progress(0.0, f"indexing {len(sequences)} texts ({total} tokens) in {len(batches)} batches")
    batch: dict = {}
    with ExitStack() as stack:
        for layer, top in enumerate(tops):
            stack.enter_context(forward_pre_hook(adapter.mlp_output(layer), _recorder(top, batch)))
        for number, members in enumerate(batches, start=1):
            ids, mask = pad_right([sequences[i] for i in members], pad_id, device)
            keep, _ = pad_right([indexable[i] for i in members], 0, device)
            keep = keep.bool() & mask
            rows = torch.as_tensor(members, device=device)[:, None].expand_as(ids)
            cols = torch.arange(ids.shape[1], device=device)[None, :].expand_as(ids)
            batch.update(keep=keep, refs=token_refs(rows[keep], cols[keep]))
            forward_padded(model, ids, mask)
            done += int(mask.sum())
            progress(done / total, f"indexed batch {number}/{len(batches)} ({done} of {total} tokens)")
    return [top.result() for top in tops]
