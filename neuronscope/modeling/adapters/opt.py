"""OPT: ``model.decoder.layers``, ``fc1`` -> ReLU -> ``fc2`` directly on each layer."""

from torch import nn

from neuronscope.modeling.adapters.base import ArchitectureAdapter


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
