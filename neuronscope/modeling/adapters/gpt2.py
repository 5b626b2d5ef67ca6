"""GPT-2 family: ``transformer.h``, Conv1D ``mlp.c_fc`` -> GELU -> ``mlp.c_proj``."""

from torch import nn

from neuronscope.modeling.adapters.base import ArchitectureAdapter


class GPT2Adapter(ArchitectureAdapter):
    family = "gpt2"
    model_types = ("gpt2",)
    mlp_size_attr = "n_inner"

    def blocks(self) -> nn.ModuleList:
        return self.model.transformer.h

    def mlp_inputs(self, layer: int) -> dict[str, nn.Module]:
        return {"in": self.blocks()[layer].mlp.c_fc}

    def mlp_output(self, layer: int) -> nn.Module:
        return self.blocks()[layer].mlp.c_proj

    def final_norm(self) -> nn.Module:
        return self.model.transformer.ln_f
