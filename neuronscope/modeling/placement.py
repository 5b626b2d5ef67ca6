"""Where a loaded model's weights live: on one device, or spread by accelerate's device map over
GPUs, CPU and disk.

With a device map, accelerate wraps every module's ``forward`` in an ``AlignDevicesHook`` that
moves the module's inputs to its execution device; weights offloaded to CPU (on a GPU machine)
or to disk stay out of the module as ``meta`` placeholders and are streamed in for each forward
from the hook's ``weights_map``. Code that reads weight values or needs the device of the input
ids asks here, so nothing above the adapters branches on placement.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from accelerate.hooks import add_hook_to_module, remove_hook_from_module
from accelerate.utils import align_module_device
from torch import nn


def _owner(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """The module holding the parameter or buffer ``name`` (dotted, as in ``state_dict``) and its own name for it."""
    path, _, attr = name.rpartition(".")
    return model.get_submodule(path), attr


def _offload_hook(module: nn.Module) -> object:
    """accelerate's hook holding ``module``'s offloaded weights (a ``SequentialHook`` is searched)."""
    hook = getattr(module, "_hf_hook", None)
    for candidate in getattr(hook, "hooks", (hook,)):
        if getattr(candidate, "weights_map", None) is not None:
            return candidate
    raise RuntimeError(f"{type(module).__name__} holds meta tensors but no accelerate offload hook")


def resident(model: nn.Module, name: str) -> torch.Tensor:
    """The value of parameter or buffer ``name`` of ``model`` (any module), real even when offloaded.

    A module that holds its tensor returns it as is (writes reach the model). An offloaded one
    is read from accelerate's weights map (disk or CPU) onto the module's execution device: a
    copy whenever it was read from disk, so treat it as read-only.
    """
    owner, attr = _owner(model, name)
    tensor = getattr(owner, attr)
    if tensor.device.type != "meta":
        return tensor
    hook = _offload_hook(owner)
    value = hook.weights_map[attr]
    device = getattr(hook, "execution_device", None)
    return value if device is None else value.to(device)


def resident_state(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``model.state_dict()`` items with offloaded entries read back (one at a time, see :func:`resident`)."""
    for name, tensor in model.state_dict().items():
        yield name, resident(model, name) if tensor.device.type == "meta" else tensor


@contextmanager
def unhooked(module: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``module`` (a leaf, e.g. a norm) holds its real tensors on its execution
    device and runs as a plain module, without accelerate's hook.

    ``torch.func`` transforms (jvp, vmap) cannot run accelerate's streaming of offloaded weights
    inside them. Inputs must already be on the module's device. A no-op for plain modules.
    """
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        yield module
        return
    with align_module_device(module):
        remove_hook_from_module(module)
        try:
            yield module
        finally:
            add_hook_to_module(module, hook)


def is_offloaded(model: nn.Module) -> bool:
    """Whether any parameter lives outside the model (offloaded to CPU or disk by a device map)."""
    return any(param.device.type == "meta" for param in model.parameters())


def input_device(model: nn.Module) -> torch.device:
    """Where input ids go: the execution device of the input embedding."""
    embedding = model.get_input_embeddings()
    device = getattr(getattr(embedding, "_hf_hook", None), "execution_device", None)
    return torch.device(device) if device is not None else embedding.weight.device


def _mapped_device(name: str, device_map: dict[str, object]) -> str:
    """The device ``device_map`` gives the module holding ``name`` (its longest matching prefix)."""
    parts = name.split(".")
    for end in range(len(parts), -1, -1):
        prefix = ".".join(parts[:end])
        if prefix in device_map:
            device = device_map[prefix]
            return f"cuda:{device}" if isinstance(device, int) else str(device)
    raise KeyError(name)


def bytes_by_device(model: nn.Module) -> dict[str, int]:
    """Bytes of the model's parameters and buffers (shared tensors once) per device.

    A tensor held by its module counts on its device; an offloaded one on the device the
    device map gives it (``cpu`` or ``disk``).
    """
    device_map = getattr(model, "hf_device_map", None) or {}
    seen: set[int] = set()
    totals: dict[str, int] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        offloaded = tensor.device.type == "meta" and device_map
        device = _mapped_device(name, device_map) if offloaded else str(tensor.device)
        totals[device] = totals.get(device, 0) + tensor.numel() * tensor.element_size()
    return totals
