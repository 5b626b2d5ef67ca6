"""Gemma 3's twists, checked against the model's own norm modules: RMSNorms scale by ``1 + weight``,
and each block normalises its MLP output before the residual add (tiny Gemma 3 with random norm weights)."""

import torch

from neuronscope.modeling.adapters import GemmaAdapter, adapter_for


def test_the_final_norm_weight_is_the_scale_the_norm_applies(shared_managers):
    adapter = shared_managers("tiny-gemma3").ensure_loaded().adapter
    assert isinstance(adapter, GemmaAdapter)
    norm = adapter.final_norm()
    x = torch.randn(5, adapter.d_model, generator=torch.Generator().manual_seed(0))
    rms = (x.square().mean(dim=-1, keepdim=True) + norm.eps).sqrt()
    with torch.no_grad():
        torch.testing.assert_close(norm(x), x / rms * adapter.final_norm_weight(), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(adapter.final_norm_weight(), norm.weight)


def test_a_neurons_output_direction_is_what_the_post_mlp_norm_makes_of_its_write(shared_managers):
    """A lone neuron's MLP output ``a w_n`` leaves the block's ``post_feedforward_layernorm`` along its output direction."""
    adapter = shared_managers("tiny-gemma3").ensure_loaded().adapter
    for layer in range(adapter.n_layers):
        norm = adapter.blocks()[layer].post_feedforward_layernorm
        with torch.no_grad():
            written = norm(2.5 * adapter.w_out(layer))  # [d_mlp, d_model], one neuron per row
        directions = adapter.output_directions(layer)
        cosine = torch.nn.functional.cosine_similarity(written, directions, dim=1)
        torch.testing.assert_close(cosine, torch.ones_like(cosine), rtol=0, atol=1e-5)
        assert not torch.allclose(
            torch.nn.functional.cosine_similarity(written, adapter.w_out(layer), dim=1), torch.ones_like(cosine), atol=1e-3
        )


def test_other_architectures_write_w_out_itself(shared_managers):
    adapter = adapter_for(shared_managers("tiny-llama").ensure_loaded().model)
    assert torch.equal(adapter.output_directions(1), adapter.w_out(1))
