"""Hooks, always registered inside a context manager and removed in ``finally``."""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Callable, Iterator, Sequence

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


def _replace_neurons(neurons: torch.Tensor, values: torch.Tensor | None) -> Callable:
    """The hook sees the activations where the previous module left them (with a device map,
    accelerate moves them to the module's device only inside its forward), so the index and
    values follow the activations' device."""

    def hook(_module: nn.Module, args: tuple) -> tuple:
        acts = args[0].clone()  # [..., d_mlp]
        acts[..., neurons.to(acts.device)] = 0.0 if values is None else values.to(acts)
        return (acts, *args[1:])

    return hook


@contextmanager
def ablated(
    adapter: ArchitectureAdapter,
    layer: int,
    neurons: Sequence[int] | torch.Tensor,
    values: torch.Tensor | None = None,
) -> Iterator[None]:
    """Within the block, neurons (layer, n) output 0, or ``values`` ``[len(neurons)]`` (mean ablation)."""
    module = adapter.mlp_output(layer)
    index = torch.as_tensor(neurons, dtype=torch.long, device=input_device(adapter.model))
    with forward_pre_hook(module, _replace_neurons(index, values)):
        yield


@contextmanager
def ablated_many(
    adapter: ArchitectureAdapter,
    neurons_by_layer: dict[int, Sequence[int]],
    values_by_layer: dict[int, torch.Tensor] | None = None,
) -> Iterator[None]:
    """Ablate neurons in several layers at once (see :func:`ablated`)."""
    with ExitStack() as stack:
        for layer, neurons in neurons_by_layer.items():
            values = (values_by_layer or {}).get(layer)
            stack.enter_context(ablated(adapter, layer, neurons, values))
        yield


@contextmanager
def captured_activations(adapter: ArchitectureAdapter, layers: Sequence[int]) -> Iterator[dict[int, list[torch.Tensor]]]:
    """Record the neuron activations ``[batch, seq, d_mlp]`` of each layer, one entry per forward.

    Records are on the model's input device, whichever device a device map gave each layer.
    """
    records: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    device = input_device(adapter.model)

    def recorder(layer: int) -> Callable:
        def hook(_module: nn.Module, args: tuple) -> None:
            records[layer].append(args[0].detach().to(device))

        return hook

    with ExitStack() as stack:
        for layer in layers:
            stack.enter_context(forward_pre_hook(adapter.mlp_output(layer), recorder(layer)))
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
