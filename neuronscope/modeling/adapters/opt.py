"""OPT: ``model.decoder.layers``, ``fc1`` -> ReLU -> ``fc2`` directly on each layer."""

import torch
from torch import nn

from neuronscope.modeling.adapters.base import ArchitectureAdapter
from neuronscope.modeling.placement import resident


class OPTAdapter(ArchitectureAdapter):
    family = "opt"
    model_types = ("opt",)
    mlp_size_attr = "ffn_dim"

    def blocks(self) -> nn.ModuleList:
        return self.model.model.decoder.layers

    def mlp_inputs(self, layer: int) -> dict[str, nn.Module]:
        return {"in": self.blocks()[layer].fc1}

    def mlp_output(self, layer: int) -> nn.Module:
        return self.blocks()[layer].fc2

    def final_norm(self) -> nn.Module:
        decoder = self.model.model.decoder
        stages = [m for m in (decoder.final_layer_norm, decoder.project_out) if m is not None]
        return nn.Sequential(*stages)

    def unembedding_weight(self) -> torch.Tensor:
        """``W_U`` composed with ``project_out`` when the model has one (``[vocab, d_model]`` either way)."""
        head = resident(self.unembed(), "weight")  # [vocab, word_embed_proj_dim]
        project_out = self.model.model.decoder.project_out
        return head if project_out is None else head @ resident(project_out, "weight")

    def final_norm_weight(self) -> torch.Tensor:
        """γ of ``final_layer_norm``; ones when the model has none (post-norm OPT models such as 350m)."""
        norm = self.model.model.decoder.final_layer_norm
        return torch.ones(self.d_model) if norm is None else resident(norm, "weight")
