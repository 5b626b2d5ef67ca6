"""LLaMA-style gated MLPs (LLaMA, Mistral, Qwen2/3): ``model.layers``, act(gate) * up -> down."""

from torch import nn

from neuronscope.modeling.adapters.base import ArchitectureAdapter


class LlamaAdapter(ArchitectureAdapter):
    family = "llama"
    model_types = ("llama", "mistral", "qwen2", "qwen3")
    mlp_size_attr = "intermediate_size"

    def blocks(self) -> nn.ModuleList:
        return self.model.model.layers

    def mlp_inputs(self, layer: int) -> dict[str, nn.Module]:
        mlp = self.blocks()[layer].mlp
        return {"gate": mlp.gate_proj, "up": mlp.up_proj}

    def mlp_output(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp.down_proj

    def final_norm(self) -> nn.Module:
        return self.model.model.norm
