"""One adapter per architecture family; :func:`adapter_for` picks by ``config.model_type``."""

from __future__ import annotations

from torch import nn

from neuronscope.errors import UnsupportedArchitecture
from neuronscope.modeling.adapters.base import ArchitectureAdapter, weight_in_out
from neuronscope.modeling.adapters.gemma import GemmaAdapter
from neuronscope.modeling.adapters.gpt2 import GPT2Adapter
from neuronscope.modeling.adapters.llama import LlamaAdapter
from neuronscope.modeling.adapters.neox import NeoXAdapter
from neuronscope.modeling.adapters.opt import OPTAdapter

ADAPTERS: tuple[type[ArchitectureAdapter], ...] = (GPT2Adapter, LlamaAdapter, GemmaAdapter, NeoXAdapter, OPTAdapter)
SUPPORTED_MODEL_TYPES: tuple[str, ...] = tuple(t for a in ADAPTERS for t in a.model_types)


def adapter_class_for(model_type: str) -> type[ArchitectureAdapter]:
    """The adapter class for a ``config.model_type``; 400 naming the supported types otherwise."""
    for adapter in ADAPTERS:
        if model_type in adapter.model_types:
            return adapter
    raise UnsupportedArchitecture(
        f"model type {model_type!r} is not supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
    )


def adapter_for(model: nn.Module) -> ArchitectureAdapter:
    """Build the adapter for a loaded transformers causal LM."""
    return adapter_class_for(model.config.model_type)(model)


__all__ = ["ArchitectureAdapter", "GemmaAdapter", "adapter_class_for", "adapter_for", "SUPPORTED_MODEL_TYPES", "weight_in_out"]
