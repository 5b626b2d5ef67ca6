"""Output tokens ``W_U · (γ ⊙ w_out)`` against the formula written out on each family's own modules,
with random final-norm scales so that γ counts (GPT-2 and OPT tie the unembedding, LLaMA and NeoX do not)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from neuronscope.analysis.neuron_view import extreme_entries, output_directions, output_logits, similar_neurons
from neuronscope.modeling.adapters import adapter_for

from tests.support.tiny_models import tiny_configs


def direct(model, family: str, layer: int, neuron: int) -> torch.Tensor:
    """The formula from the model's own attributes (no adapter)."""
    if family == "tiny-gpt2":
        w, gamma, unembed = model.transformer.h[layer].mlp.c_proj.weight[neuron], model.transformer.ln_f.weight, model.transformer.wte.weight
    elif family == "tiny-llama":
        w, gamma, unembed = model.model.layers[layer].mlp.down_proj.weight[:, neuron], model.model.norm.weight, model.lm_head.weight
    elif family == "tiny-neox":
        w, gamma, unembed = model.gpt_neox.layers[layer].mlp.dense_4h_to_h.weight[:, neuron], model.gpt_neox.final_layer_norm.weight, model.lm_head.weight
    else:
        decoder = model.model.decoder
        w, gamma, unembed = decoder.layers[layer].fc2.weight[:, neuron], decoder.final_layer_norm.weight, decoder.embed_tokens.weight
    return unembed @ (gamma * w)


@pytest.mark.parametrize("family, tied", [("tiny-gpt2", True), ("tiny-llama", False), ("tiny-neox", False), ("tiny-opt", True)])
@torch.no_grad()
def test_output_logits_equal_the_formula(family, tied):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_configs(vocab_size=50)[family]).eval()
    adapter = adapter_for(model)
    final = adapter.final_norm_weight()
    final.copy_(torch.rand_like(final) * 2)
    assert (model.get_output_embeddings().weight is model.get_input_embeddings().weight) == tied
    for layer, neuron in [(0, 0), (1, 17), (1, 63)]:
        expected = direct(model, family, layer, neuron)
        torch.testing.assert_close(output_logits(adapter, layer, neuron), expected, rtol=1e-5, atol=1e-6)
        promoted, suppressed = extreme_entries(output_logits(adapter, layer, neuron), 5)
        assert promoted == torch.argsort(expected, descending=True)[:5].tolist()
        assert suppressed == torch.argsort(expected)[:5].tolist()


@torch.no_grad()
def test_similar_neurons_are_the_highest_cosines_of_output_directions():
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_config(tiny_configs(vocab_size=50)["tiny-llama"]).eval()
    adapter = adapter_for(model)
    rows = torch.cat([model.model.layers[layer].mlp.down_proj.weight.T for layer in range(2)])  # [2 * 64, d_model]
    cosine = torch.nn.functional.cosine_similarity(rows, rows[64 + 5][None, :], dim=1)
    cosine[64 + 5] = -2
    expected = [(int(i) // 64, int(i) % 64) for i in torch.argsort(cosine, descending=True)[:10]]
    found = similar_neurons(output_directions(adapter), 1, 5, 10)
    assert [(layer, n) for layer, n, _ in found] == expected
    assert [c for _, _, c in found] == pytest.approx(torch.sort(cosine, descending=True).values[:10].tolist(), abs=1e-6)
