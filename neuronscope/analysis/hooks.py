"""Hooks, always registered inside a context manager and removed in ``finally``."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Optional, Sequence

import torch
from torch import nn

from neuronscope.modeling.adapters import ArchitectureAdapter
from neuronscope.modeling.placement import input_device


_TAG = "_neuronscope_hook"


def _tagged(hook: Callable) -> Callable:
    """Wrap ``hook`` so :func:`hook_count` can tell NeuronScope's hooks from the library's own."""

    def wrapper(*args, **kwargs):
        return hook(*args, **kwargs)

    setattr(wrapper, _TAG, True)
    return wrapper


@contextmanager
def forward_pre_hook(module: nn.Module, hook: Callable, *, with_kwargs: bool = False) -> Iterator[None]:
    """Register ``hook`` as a forward pre-hook of ``module`` for the duration of the block."""
    handle = module.register_forward_pre_hook(_tagged(hook), with_kwargs=with_kwargs)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def forward_hook(module: nn.Module, hook: Callable) -> Iterator[None]:
    """Register ``hook`` as a forward hook of ``module`` for the duration of the block."""
    handle = module.register_forward_hook(_tagged(hook))
    try:
        yield
    finally:
        handle.remove()


ActivationHook = Callable[[int, torch.Tensor], Optional[torch.Tensor]]
"""``hook(layer, acts)`` on a layer's neuron activations ``[..., d_mlp]`` (the input of its MLP
output projection); a returned tensor replaces them, ``None`` leaves them."""


@contextmanager
def activation_hooks(adapter: ArchitectureAdapter, layers: Sequence[int], hook: ActivationHook) -> Iterator[None]:
    """Within the block, ``hook`` sees (and may replace) the activations of each of ``layers`` at every forward.

    The one place where NeuronScope hooks the MLP output projections. With a device map the
    activations arrive where the previous module left them (accelerate moves them to the
    projection's device only inside its forward), so hooks follow ``acts.device``.
    """

    def pre_hook(layer: int) -> Callable:
        def call(_module: nn.Module, args: tuple) -> tuple | None:
            replaced = hook(layer, args[0])
            return None if replaced is None else (replaced, *args[1:])

        return call

    with ExitStack() as stack:
        for layer in layers:
            stack.enter_context(forward_pre_hook(adapter.mlp_output(layer), pre_hook(layer)))
        yield


@contextmanager
def ablated_many(
    adapter: ArchitectureAdapter,
    neurons_by_layer: dict[int, Sequence[int]],
    values_by_layer: dict[int, torch.Tensor] | None = None,
) -> Iterator[None]:
    """Within the block, neurons (layer, n) of every layer output 0, or ``values_by_layer[layer]`` ``[len(neurons)]`` (mean ablation)."""
    device = input_device(adapter.model)
    index = {layer: torch.as_tensor(neurons, dtype=torch.long, device=device) for layer, neurons in neurons_by_layer.items()}
    values = values_by_layer or {}

    def replace(layer: int, acts: torch.Tensor) -> torch.Tensor:
        acts = acts.clone()  # [..., d_mlp]
        fill = values.get(layer)
        acts[..., index[layer].to(acts.device)] = 0.0 if fill is None else fill.to(acts)
        return acts

    with activation_hooks(adapter, list(index), replace):
        yield


@contextmanager
def ablated(
    adapter: ArchitectureAdapter,
    layer: int,
    neurons: Sequence[int] | torch.Tensor,
    values: torch.Tensor | None = None,
) -> Iterator[None]:
    """Within the block, neurons (layer, n) output 0, or ``values`` ``[len(neurons)]`` (mean ablation)."""
    with ablated_many(adapter, {layer: neurons}, None if values is None else {layer: values}):
        yield


@contextmanager
def captured_activations(adapter: ArchitectureAdapter, layers: Sequence[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the neuron activations ``[batch, seq, d_mlp]`` of each layer, one entry per forward.

    Records are on the model's input device, whichever device a device map gave each layer.
    """
    records: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    device = input_device(adapter.model)

    def record(layer: int, acts: torch.Tensor) -> None:
        records[layer].append(acts.detach().to(device))

    with activation_hooks(adapter, layers, record):
        yield records


def hook_count(model: nn.Module) -> int:
    """Number of NeuronScope forward (pre-)hooks registered anywhere in ``model`` (0 when clean).

    transformers registers hooks of its own (to record hidden states); those are not counted.
    """
    return sum(
        getattr(hook, _TAG, False)
        for module in model.modules()
        for hook in [*module._forward_pre_hooks.values(), *module._forward_hooks.values()]
    )
