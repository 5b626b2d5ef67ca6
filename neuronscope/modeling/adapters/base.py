"""The adapter contract: where the blocks and MLP projections of an architecture live.

Everything above the adapters speaks only of (layer, neuron). A neuron (L, n) is input
feature n of block L's MLP output projection. Weights are normalised once, here:
``W_in`` is ``[d_mlp, d_model]`` per input projection and ``W_out`` is ``[d_mlp, d_model]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D


def weight_in_out(module: nn.Module) -> torch.Tensor:
    """The weight of a projection as ``[in_features, out_features]`` (a view, no copy).

    ``nn.Linear`` stores ``[out, in]``; GPT-2's ``Conv1D`` stores ``[in, out]``.
    """
    if isinstance(module, Conv1D):
        return module.weight
    if isinstance(module, nn.Linear):
        return module.weight.T
    raise TypeError(f"unsupported projection module {type(module).__name__}")


class ArchitectureAdapter(ABC):
    """Locates the transformer blocks and MLP projections of one architecture family."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]

    def __init__(self, model: nn.Module):
        self.model = model

    @abstractmethod
    def blocks(self) -> nn.ModuleList:
        """The transformer blocks, in order; the block index is the layer index."""

    @abstractmethod
    def mlp_inputs(self, layer: int) -> dict[str, nn.Module]:
        """The MLP input projections of ``layer`` by role (``in``, or ``gate`` and ``up``)."""

    @abstractmethod
    def mlp_output(self, layer: int) -> nn.Module:
        """The MLP output projection of ``layer``; its input features are the neurons."""

    @abstractmethod
    def final_norm(self) -> nn.Module:
        """Maps the last block's output to the final hidden state (input of the LM head)."""

    @property
    def n_layers(self) -> int:
        return len(self.blocks())

    @property
    def d_model(self) -> int:
        return self.w_out(0).shape[1]

    def d_mlp(self, layer: int) -> int:
        """Number of neurons in ``layer`` (may differ per layer once a model is pruned)."""
        return self.w_out(layer).shape[0]

    def w_in(self, layer: int) -> dict[str, torch.Tensor]:
        """Input projection weights, each ``[d_mlp, d_model]`` (views)."""
        return {role: weight_in_out(module).T for role, module in self.mlp_inputs(layer).items()}

    def w_out(self, layer: int) -> torch.Tensor:
        """Output projection weight ``[d_mlp, d_model]`` (a view)."""
        return weight_in_out(self.mlp_output(layer))

    def unembed(self) -> nn.Module:
        """The LM head (final hidden state -> logits)."""
        return self.model.get_output_embeddings()
