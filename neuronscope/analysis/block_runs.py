"""Running a model one block at a time: a block's output, a block called on a new hidden state with
its recorded other inputs, and calibration sequences carried through the blocks layer by layer.

Nothing here names an architecture: a block's other inputs (masks, positions, rotary tables) are
recorded by a forward pre-hook on a real forward pass of the model (whose blocks may be passed
through, :func:`passed_through`) and given back as they were.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

from neuronscope.analysis.hooks import activation_hooks, forward_hook, forward_pre_hook
from neuronscope.modeling.adapters import ArchitectureAdapter


class StopForward(Exception):
    """Raised by a hook once it has seen what it needs: the rest of the forward pass is skipped."""


ADDITIVE_TOLERANCE = 1e-4
"""Largest difference, relative to the block output's largest entry, between a block's output and
what a residual add of its MLP output predicts (float32 rounding is ~1e-6)."""

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


def _hidden_input(*args: object, **kwargs: object) -> object:
    """A block's forward that does nothing: it returns its hidden-state input."""
    return args[0] if args else kwargs["hidden_states"]


@contextmanager
def passed_through(blocks: Sequence[nn.Module]) -> Iterator[None]:
    """Within the block, each of ``blocks`` returns its hidden-state input instead of running (its
    pre-hooks still see its inputs); each block's own ``forward`` attribute (accelerate installs one
    with a device map) is put back in ``finally``."""
    saved = [block.__dict__.get("forward") for block in blocks]
    try:
        for block in blocks:
            block.forward = _hidden_input
        yield
    finally:
        for block, forward in zip(blocks, saved):
            if forward is None:
                del block.forward
            else:
                block.forward = forward


@torch.no_grad()
def carry(adapter: ArchitectureAdapter, ids: torch.Tensor, last: int) -> Carried:
    """Start ``ids`` ``[seq]``: record block 0's input and the other inputs of blocks ``0..last``.

    The blocks' other inputs (masks, positions, rotary tables) are made by the model before its
    blocks from the token ids alone, so the blocks are passed through (:func:`passed_through`)
    rather than run, and the forward pass stops at block ``last``'s input.
    """
    inputs: list[BlockInputs] = []
    first: list[torch.Tensor] = []

    def record(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not first:
            first.append(args[0] if args else kwargs["hidden_states"])
        inputs.append(_without_hidden(args, kwargs))
        if len(inputs) > last:
            raise StopForward

    blocks = adapter.blocks()
    with ExitStack() as stack:
        for block in blocks[: last + 1]:
            stack.enter_context(forward_pre_hook(block, record, with_kwargs=True))
        stack.enter_context(passed_through(blocks[:last]))
        try:
            adapter.model(input_ids=ids[None], use_cache=False)
        except StopForward:
            pass
    return Carried(first[0], inputs)


@dataclass(frozen=True)
class MlpRecord:
    """One sequence's run of block ``L``: the input ``acts`` ``[1, seq, d_mlp]`` of its MLP output
    projection, that projection's output ``out`` ``[1, seq, d_model]`` and the block's output
    ``block_out`` ``[1, seq, d_model]``."""

    acts: torch.Tensor
    out: torch.Tensor
    block_out: torch.Tensor


@torch.no_grad()
def adds_mlp_output(adapter: ArchitectureAdapter, layer: int, hidden: torch.Tensor, inputs: BlockInputs, record: MlpRecord) -> bool:
    """Whether block ``layer`` adds its MLP output to the residual stream (its output moves exactly
    with the output projection's output), probed on the run ``record`` of ``hidden``
    ``[1, seq, d_model]`` with ``inputs``: shift the projection's output by a seeded random vector
    and check that the block's output shifts by the same vector (to :data:`ADDITIVE_TOLERANCE`)."""
    generator = torch.Generator(device=record.out.device).manual_seed(0)
    delta = torch.randn(record.out.shape, generator=generator, device=record.out.device, dtype=record.out.dtype)
    delta = delta * record.out.std().clamp_min(1e-3)

    def shift(_module: nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + delta.reshape(output.shape)

    with forward_hook(adapter.mlp_output(layer), shift):
        probed = call_block(adapter.blocks()[layer], hidden, *inputs)
    return _close(probed, record.block_out + delta)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> bool:
    return bool((actual - expected).abs().max() <= ADDITIVE_TOLERANCE * expected.abs().max())


@dataclass(frozen=True)
class LayerRun:
    """Block ``L`` run on every carried sequence, tokens in order: its neuron activations ``acts``
    ``[tokens, d_mlp]`` (float64, CPU) and ``output`` ``[tokens, d_model]`` (float32, CPU), what
    the MLP output moves one for one: the block's output where the block adds its MLP output to the
    residual stream (``residual``), else the MLP output projection's output."""

    acts: torch.Tensor
    output: torch.Tensor
    residual: bool

    @classmethod
    def of(cls, records: Sequence[MlpRecord], residual: bool) -> "LayerRun":
        acts = torch.cat([r.acts.reshape(-1, r.acts.shape[-1]).double().cpu() for r in records])
        outputs = [r.block_out if residual else r.out for r in records]
        return cls(acts, torch.cat([o.reshape(-1, o.shape[-1]).float().cpu() for o in outputs]), residual)


@torch.no_grad()
def layer_by_layer(
    adapter: ArchitectureAdapter,
    sequences: Sequence[torch.Tensor],
    layers: Sequence[int],
    between: Callable[[int, LayerRun], None],
    *,
    changes: bool = True,
) -> None:
    """Carry ``sequences`` (1-D token ids each) through the blocks in order; at each of ``layers``,
    give ``between(layer, run)`` that block's :class:`LayerRun` as the model is *now*, then carry
    the sequences on through the block as ``between`` left it (it may change the block's weights;
    with ``changes=False`` it only reads, and the recorded block outputs are carried on as they are).

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
        records = _recorded_runs(adapter, blocks[layer], layer, carried)
        additive = adds_mlp_output(adapter, layer, carried[0].hidden, carried[0].inputs[layer], records[0])
        between(layer, LayerRun.of(records, additive))
        if layer < last and changes:
            _carry_on(adapter, blocks[layer], layer, carried, records, additive)
        elif layer < last:
            for item, record in zip(carried, records):
                item.hidden = record.block_out


def _recorded_runs(adapter: ArchitectureAdapter, block: nn.Module, layer: int, carried: list[Carried]) -> list[MlpRecord]:
    """Block ``layer`` run on every carried sequence, recording the :class:`MlpRecord` of each."""
    seen: dict[str, torch.Tensor] = {}

    def keep_acts(_layer: int, acts: torch.Tensor) -> None:
        seen["acts"] = acts

    def keep_out(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
        seen["out"] = output

    records = []
    with activation_hooks(adapter, [layer], keep_acts), forward_hook(adapter.mlp_output(layer), keep_out):
        for item in carried:
            output = call_block(block, item.hidden, *item.inputs[layer])
            seq = output.shape[1]
            records.append(MlpRecord(seen["acts"].reshape(1, seq, -1), seen["out"].reshape(1, seq, -1), output))
    return records


def _carry_on(
    adapter: ArchitectureAdapter, block: nn.Module, layer: int, carried: list[Carried], records: list[MlpRecord], additive: bool
) -> None:
    """Move every carried sequence past block ``layer`` as it is now.

    Where the block is ``additive`` and only its output projection changed, its new output is
    ``block_out + (projection(acts) - out)`` ``[1, seq, d_model]``. That shortcut is checked against
    a real run of the block on the first sequence; where it fails, or the block is not additive,
    every sequence runs the block again.
    """
    projection = adapter.mlp_output(layer)

    def shortcut(record: MlpRecord) -> torch.Tensor:
        return record.block_out + projection(record.acts) - record.out

    first = call_block(block, carried[0].hidden, *carried[0].inputs[layer])
    additive = additive and _close(shortcut(records[0]), first)
    carried[0].hidden = first
    for item, record in zip(carried[1:], records[1:]):
        item.hidden = shortcut(record) if additive else call_block(block, item.hidden, *item.inputs[layer])
