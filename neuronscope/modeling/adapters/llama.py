"""LLaMA-style gated MLPs (LLaMA, Mistral, Qwen2/3): ``model.layers``, act(gate) * up -> down.

Only LLaMA's config has ``mlp_bias`` (biases on all three projections); an output bias for
compensation turns it on, with zero biases on ``gate_proj`` and ``up_proj``.
"""

from typing import Sequence

from torch import nn

from neuronscope.modeling.adapters.base import ArchitectureAdapter, add_zero_bias


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

    def supports_output_bias(self) -> bool:
        return self.model.config.model_type == "llama" or super().supports_output_bias()

    def added_bias_parameters(self, widths: Sequence[int]) -> int:
        if self.blocks()[0].mlp.down_proj.bias is not None:
            return 0
        return sum(2 * width + self.d_model for width in widths)

    def _add_biases(self) -> None:
        if self.model.config.model_type != "llama":
            super()._add_biases()
        for block in self.blocks():
            for module in (block.mlp.gate_proj, block.mlp.up_proj, block.mlp.down_proj):
                if module.bias is None:
                    add_zero_bias(module)
        self.model.config.mlp_bias = True
