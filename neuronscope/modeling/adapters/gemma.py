"""Gemma 3 (text): LLaMA's gated MLP layout, with two Gemma twists.

Every RMSNorm scales by ``1 + weight``, and each block normalises its MLP output
(``post_feedforward_layernorm``) before adding it to the residual stream, so a neuron's write
into the residual stream is ``W_out`` scaled by that norm's gain. Gemma's MLP projections never
have biases: ``bias`` compensation is refused and ``reconstruct`` refits without an offset.
"""

import torch

from neuronscope.modeling.adapters.llama import LlamaAdapter
from neuronscope.modeling.placement import resident


class GemmaAdapter(LlamaAdapter):
    family = "gemma"
    model_types = ("gemma3_text",)
    output_direction_formula = "(1 + g_post) ⊙ w_out"

    def final_norm_weight(self) -> torch.Tensor:
        return 1 + resident(self.final_norm(), "weight")

    def output_directions(self, layer: int) -> torch.Tensor:
        w_out = self.w_out(layer)  # [d_mlp, d_model]
        gain = 1 + resident(self.blocks()[layer].post_feedforward_layernorm, "weight")  # [d_model]
        return w_out * gain.to(w_out)
