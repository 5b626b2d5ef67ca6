"""GPT-NeoX / Pythia: ``gpt_neox.layers``, ``mlp.dense_h_to_4h`` -> GELU -> ``mlp.dense_4h_to_h``."""

from torch import nn

from neuronscope.modeling.adapters.base import ArchitectureAdapter


class NeoXAdapter(ArchitectureAdapter):
    family = "gpt_neox"
    model_types = ("gpt_neox",)
    mlp_size_attr = "intermediate_size"

    def blocks(self) -> nn.ModuleList:
        return self.model.gpt_neox.layers

    def mlp_inputs(self, layer: int) -> dict[str, nn.Module]:
        return {"in": self.blocks()[layer].mlp.dense_h_to_4h}

    def mlp_output(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp.dense_4h_to_h

    def final_norm(self) -> nn.Module:
        return self.model.gpt_neox.final_layer_norm
