"""The adapter contract: where the blocks and MLP projections of an architecture live.

Everything above the adapters speaks only of (layer, neuron). A neuron (L, n) is input
feature n of block L's MLP output projection. Weights are normalised once, here:
``W_in`` is ``[d_mlp, d_model]`` per input projection and ``W_out`` is ``[d_mlp, d_model]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal, Sequence

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from neuronscope.modeling.placement import resident


def weight_in_out(module: nn.Module, weight: torch.Tensor | None = None) -> torch.Tensor:
    """The weight of a projection as ``[in_features, out_features]`` (a view, no copy).

    ``nn.Linear`` stores ``[out, in]``; GPT-2's ``Conv1D`` stores ``[in, out]``. ``weight`` is
    the module's own (``module.weight``, a ``meta`` placeholder when offloaded) unless given.
    """
    weight = module.weight if weight is None else weight
    if isinstance(module, Conv1D):
        return weight
    if isinstance(module, nn.Linear):
        return weight.T
    raise TypeError(f"unsupported projection module {type(module).__name__}")


def weight_values_in_out(module: nn.Module) -> torch.Tensor:
    """:func:`weight_in_out` holding the real values, read back when a device map offloaded them."""
    return weight_in_out(module, resident(module, "weight"))


MLP_SIZES_KEY = "neuronscope_mlp_sizes"
"""Config key holding per-layer MLP sizes when pruning left layers of different sizes."""


def sliced_projection(module: nn.Module, keep: torch.Tensor, side: Literal["in", "out"]) -> nn.Module:
    """A new projection of the same type holding only the features ``keep`` ``[k]`` on one side.

    ``side="out"`` keeps output features (and their bias entries): an MLP input projection.
    ``side="in"`` keeps input features (the bias is unchanged): the MLP output projection.
    """
    weight = weight_in_out(module).detach()  # [in, out]
    weight = weight[:, keep] if side == "out" else weight[keep, :]
    bias = getattr(module, "bias", None)
    if bias is not None:
        bias = bias.detach()[keep] if side == "out" else bias.detach()
    n_in, n_out = weight.shape
    with torch.device("meta"):
        new = Conv1D(n_out, n_in) if isinstance(module, Conv1D) else nn.Linear(n_in, n_out, bias=bias is not None)
    new.weight = nn.Parameter(weight.clone() if isinstance(module, Conv1D) else weight.T.contiguous())
    if bias is not None:
        new.bias = nn.Parameter(bias.clone())
    return new


class ArchitectureAdapter(ABC):
    """Locates the transformer blocks and MLP projections of one architecture family."""

    family: ClassVar[str]
    model_types: ClassVar[tuple[str, ...]]
    mlp_size_attr: ClassVar[str]
    """The config attribute holding the MLP hidden size (uniform over layers)."""

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
        return weight_in_out(self.mlp_output(0)).shape[1]

    def d_mlp(self, layer: int) -> int:
        """Number of neurons in ``layer`` (may differ per layer once a model is pruned)."""
        return weight_in_out(self.mlp_output(layer)).shape[0]

    def w_in(self, layer: int) -> dict[str, torch.Tensor]:
        """Input projection weights, each ``[d_mlp, d_model]``: views of the model's weights, or
        read-only copies of weights a device map offloaded to CPU or disk."""
        return {role: weight_values_in_out(module).T for role, module in self.mlp_inputs(layer).items()}

    def w_out(self, layer: int) -> torch.Tensor:
        """Output projection weight ``[d_mlp, d_model]`` (a view, or a read-only copy when offloaded)."""
        return weight_values_in_out(self.mlp_output(layer))

    output_direction_formula: ClassVar[str] = "w_out"
    """How :meth:`output_directions` is computed, as neuron pages write it in their formulas."""

    def output_directions(self, layer: int) -> torch.Tensor:
        """Each neuron's write into the residual stream per unit activation, ``[d_mlp, d_model]``:
        ``W_out``, times the gain of a norm the block applies to its MLP output before adding it.

        The directions of neuron pages (output tokens, similar neurons) and of attribution's direct
        path. Only where the MLP output is added as is are they the exact residual change.
        """
        return self.w_out(layer)

    def unembed(self) -> nn.Module:
        """The LM head (final hidden state -> logits)."""
        return self.model.get_output_embeddings()

    def unembedding_weight(self) -> torch.Tensor:
        """``W_U`` ``[vocab, d_model]``: maps the final norm's output to logits (tied or not; biases ignored)."""
        return resident(self.unembed(), "weight")

    def final_norm_weight(self) -> torch.Tensor:
        """The final norm's scale γ ``[d_model]`` (LayerNorm or RMSNorm weight; its bias is ignored)."""
        return resident(self.final_norm(), "weight")

    def keep_neurons(self, layer: int, keep: torch.Tensor) -> None:
        """Replace ``layer``'s MLP projections by smaller ones holding only neurons ``keep`` ``[k]``, in order."""
        for module in self.mlp_inputs(layer).values():
            self._replace(module, sliced_projection(module, keep, "out"))
        output = self.mlp_output(layer)
        self._replace(output, sliced_projection(output, keep, "in"))

    def supports_output_bias(self) -> bool:
        """Whether the MLP output projection has a bias, or can get one that stock transformers reloads."""
        return getattr(self.mlp_output(0), "bias", None) is not None

    def output_bias(self, layer: int) -> torch.Tensor:
        """The MLP output projection's bias ``[d_model]`` (a parameter, changed in place by compensation).

        Call only where :meth:`supports_output_bias`; architectures whose projections may lack a
        bias override :meth:`_add_biases` to create zero biases that their config then declares.
        """
        if getattr(self.mlp_output(layer), "bias", None) is None:
            self._add_biases()
        return self.mlp_output(layer).bias

    def added_bias_parameters(self, widths: Sequence[int]) -> int:
        """Parameters that :meth:`output_bias` would add (the zero biases of :meth:`_add_biases`) to
        the model with ``widths[layer]`` neurons in each layer; 0 where the output projections
        already have their biases."""
        return 0

    def set_output_weight(self, layer: int, weight: torch.Tensor) -> None:
        """Overwrite ``layer``'s output projection weight with ``weight`` ``[d_mlp, d_model]``."""
        with torch.no_grad():
            weight_in_out(self.mlp_output(layer)).copy_(weight)

    def _add_biases(self) -> None:
        raise TypeError(f"{self.family} MLP output projections have no bias")

    def record_mlp_sizes(self, sizes: Sequence[int]) -> None:
        """Write the per-layer MLP sizes into the config so a saved model rebuilds with them.

        Equal sizes go into the architecture's own attribute (plain ``from_pretrained`` reloads
        the model); unequal ones also go under :data:`MLP_SIZES_KEY`, with the attribute set to
        the largest size (NeuronScope's loader shrinks each layer to its recorded size).
        """
        config = self.model.config
        setattr(config, self.mlp_size_attr, max(sizes))
        if len(set(sizes)) == 1:
            if hasattr(config, MLP_SIZES_KEY):
                delattr(config, MLP_SIZES_KEY)
        else:
            setattr(config, MLP_SIZES_KEY, list(sizes))

    def _replace(self, old: nn.Module, new: nn.Module) -> None:
        name = next(name for name, module in self.model.named_modules() if module is old)
        self.model.set_submodule(name, new)


def add_zero_bias(module: nn.Module) -> None:
    """Give ``module`` (an ``nn.Linear`` without one) a zero bias ``[out_features]``."""
    module.bias = nn.Parameter(torch.zeros(module.out_features, dtype=module.weight.dtype, device=module.weight.device))


def recorded_mlp_sizes(config) -> list[int] | None:
    """Per-layer MLP sizes recorded by :meth:`ArchitectureAdapter.record_mlp_sizes`, if unequal."""
    sizes = getattr(config, MLP_SIZES_KEY, None)
    return list(sizes) if sizes is not None else None
