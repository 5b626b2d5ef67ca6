"""Running a model one block at a time: a block's output, a block called on a new hidden state with
its recorded other inputs, and calibration sequences carried through the blocks layer by layer.

Nothing here names an architecture: a block's other inputs (masks, positions, rotary tables) are
recorded by a forward pre-hook on a real forward pass and given back as they were.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from neuronscope.analysis.hooks import activation_hooks, forward_hook, forward_pre_hook
from neuronscope.modeling.adapters import ArchitectureAdapter


class StopForward(Exception):
    """Raised by a hook once it has seen what it needs: the rest of the forward pass is skipped."""


SHORTCUT_TOLERANCE = 1e-4
"""Largest difference, relative to the block output's largest entry, between a block's carried
output by the residual shortcut and a real run of it (float32 rounding is ~1e-6)."""

BlockInputs = tuple[tuple, dict]
"""A block's recorded ``(args, kwargs)``; the hidden state in them is replaced at each call."""


def block_output(output: torch.Tensor | tuple) -> torch.Tensor:
    """The hidden state a block returns (blocks may return a tensor or a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def call_block(block: nn.Module, hidden: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
    """Run ``block`` on ``hidden`` ``[batch, seq, d_model]`` with the recorded other inputs ``args``/``kwargs``."""
    if args:
        out = block(hidden, *args[1:], **kwargs)
    else:
        out = block(**{**kwargs, "hidden_states": hidden})
    return block_output(out)


@dataclass
class Carried:
    """One sequence on its way through the blocks: ``hidden`` ``[1, seq, d_model]`` is the input of
    the next block to run; ``inputs[i]`` block ``i``'s other inputs (its hidden state dropped)."""

    hidden: torch.Tensor
    inputs: list[BlockInputs]


def _without_hidden(args: tuple, kwargs: dict) -> BlockInputs:
    if args:
        return (None, *args[1:]), kwargs
    return (), {key: value for key, value in kwargs.items() if key != "hidden_states"}


@torch.no_grad()
def carry(adapter: ArchitectureAdapter, ids: torch.Tensor, last: int) -> Carried:
    """Start ``ids`` ``[seq]``: record block 0's input and the other inputs of blocks ``0..last``
    (the forward pass stops at block ``last``'s input)."""
    inputs: list[BlockInputs] = []
    first: list[torch.Tensor] = []

    def record(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not first:
            first.append(args[0] if args else kwargs["hidden_states"])
        inputs.append(_without_hidden(args, kwargs))
        if len(inputs) > last:
            raise StopForward

    with ExitStack() as stack:
        for block in adapter.blocks()[: last + 1]:
            stack.enter_context(forward_pre_hook(block, record, with_kwargs=True))
        try:
            adapter.model(input_ids=ids[None], use_cache=False)
        except StopForward:
            pass
    return Carried(first[0], inputs)


@torch.no_grad()
def layer_by_layer(
    adapter: ArchitectureAdapter,
    sequences: Sequence[torch.Tensor],
    layers: Sequence[int],
    between: Callable[[int, torch.Tensor], None],
) -> None:
    """Carry ``sequences`` (1-D token ids each) through the blocks in order; at each of ``layers``,
    give ``between(layer, acts)`` that block's activations ``[tokens, d_mlp]`` (float64, CPU, every
    token of every sequence in order) as the model is *now*, then carry the sequences on through the
    block as ``between`` left it (it may change the block's weights).

    Equal to a fresh forward pass of the model as it is after every ``between`` call. Where the
    block adds its MLP output to the residual stream, the block is not run again: its output moves
    by the change of the output projection's output (:func:`_carry_on`). Blocks after the last of
    ``layers`` are not run.
    """
    last, wanted = max(layers), set(layers)
    carried = [carry(adapter, ids, last) for ids in sequences]
    blocks = adapter.blocks()
    for layer in range(last + 1):
        if layer not in wanted:
            for item in carried:
                item.hidden = call_block(blocks[layer], item.hidden, *item.inputs[layer])
            continue
        runs = _recorded_runs(adapter, blocks[layer], layer, carried)
        between(layer, torch.cat([run.acts.reshape(-1, run.acts.shape[-1]).double().cpu() for run in runs]))
        if layer < last:
            _carry_on(adapter, blocks[layer], layer, carried, runs)


@dataclass
class BlockRun:
    """One sequence's run of a block: the activations its MLP output projection received
    (``[1, seq, d_mlp]``, or ``[seq, d_mlp]`` where the architecture flattens), that projection's
    output, and the block's output ``[1, seq, d_model]``."""

    acts: torch.Tensor
    projected: torch.Tensor
    output: torch.Tensor


def _recorded_runs(adapter: ArchitectureAdapter, block: nn.Module, layer: int, carried: list[Carried]) -> list[BlockRun]:
    """Block ``layer`` run on every carried sequence, recording :class:`BlockRun` of each."""
    seen: dict[str, torch.Tensor] = {}

    def keep_acts(_layer: int, acts: torch.Tensor) -> None:
        seen["acts"] = acts

    def keep_projected(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        seen["projected"] = output

    runs = []
    with activation_hooks(adapter, [layer], keep_acts), forward_hook(adapter.mlp_output(layer), keep_projected):
        for item in carried:
            output = call_block(block, item.hidden, *item.inputs[layer])
            runs.append(BlockRun(seen["acts"], seen["projected"], output))
    return runs


def _carry_on(adapter: ArchitectureAdapter, block: nn.Module, layer: int, carried: list[Carried], runs: list[BlockRun]) -> None:
    """Move every carried sequence past block ``layer`` as it is now.

    The shortcut ``output + (projection(acts) - projected)`` (``[1, seq, d_model]``) holds where the
    block adds its MLP output to the residual stream and only the output projection changed. It is
    checked against a real run of the block on the first sequence; where they differ, every
    sequence runs the block again.
    """
    projection = adapter.mlp_output(layer)

    def shortcut(run: BlockRun) -> torch.Tensor:
        return run.output + (projection(run.acts) - run.projected).reshape(run.output.shape)

    first = call_block(block, carried[0].hidden, *carried[0].inputs[layer])
    additive = bool((shortcut(runs[0]) - first).abs().max() <= SHORTCUT_TOLERANCE * first.abs().max())
    carried[0].hidden = first
    for item, run in zip(carried[1:], runs[1:]):
        item.hidden = shortcut(run) if additive else call_block(block, item.hidden, *item.inputs[layer])
