"""Adapters locate the MLP projections and orient weights as [d_mlp, d_model]."""

import pytest
import torch

from neuronscope.analysis.forward import encode, run
from neuronscope.analysis.hooks import ablated, captured_activations, forward_hook, forward_pre_hook, hook_count
from neuronscope.errors import UnsupportedArchitecture
from neuronscope.modeling.adapters import adapter_class_for
from tests.support.tiny_models import ALL_TINY

TEXT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture(params=ALL_TINY)
def any_loaded(request, shared_managers):
    return shared_managers(request.param).ensure_loaded()


def test_shapes_are_normalised(any_loaded):
    adapter = any_loaded.adapter
    d_model = any_loaded.config.hidden_size
    assert adapter.n_layers == 2 and adapter.d_model == d_model
    for layer in range(adapter.n_layers):
        d_mlp = adapter.d_mlp(layer)
        assert adapter.w_out(layer).shape == (d_mlp, d_model)
        for weight in adapter.w_in(layer).values():
            assert weight.shape == (d_mlp, d_model)


def test_w_in_rows_give_each_neurons_preactivation(any_loaded):
    """x @ W_in[role].T (+ bias) equals what each input projection outputs."""
    adapter, model = any_loaded.adapter, any_loaded.model
    ids = encode(any_loaded.tokenizer, TEXT)
    for role, module in adapter.mlp_inputs(1).items():
        seen = {}
        with forward_pre_hook(module, lambda _m, args: seen.setdefault("x", args[0])), \
                forward_hook(module, lambda _m, _a, out: seen.setdefault("y", out)):
            run(model, ids)
        expected = seen["x"] @ adapter.w_in(1)[role].T
        if getattr(module, "bias", None) is not None:
            expected = expected + module.bias
        torch.testing.assert_close(seen["y"], expected, atol=1e-5, rtol=1e-5)


def test_w_out_rows_reconstruct_the_mlp_output(any_loaded):
    adapter, model = any_loaded.adapter, any_loaded.model
    module = adapter.mlp_output(0)
    seen = {}
    with captured_activations(adapter, [0]) as acts, forward_hook(module, lambda _m, _a, out: seen.setdefault("y", out)):
        run(model, encode(any_loaded.tokenizer, TEXT))
    expected = acts[0][0] @ adapter.w_out(0)
    if getattr(module, "bias", None) is not None:
        expected = expected + module.bias
    torch.testing.assert_close(seen["y"], expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("neurons", [[3], [0, 5, 17]])
def test_hook_ablation_equals_zeroing_w_out_rows(any_loaded, neurons):
    adapter, model = any_loaded.adapter, any_loaded.model
    ids = encode(any_loaded.tokenizer, TEXT)
    with ablated(adapter, 1, neurons):
        hooked = run(model, ids).logits
    assert hook_count(model) == 0
    w_out = adapter.w_out(1)
    saved = w_out[neurons].clone()
    with torch.no_grad():
        w_out[neurons] = 0.0
    try:
        zeroed = run(model, ids).logits
    finally:
        with torch.no_grad():
            w_out[neurons] = saved
    torch.testing.assert_close(hooked, zeroed, atol=1e-6, rtol=0)
    assert not torch.allclose(hooked, run(model, ids).logits)


def test_hooks_are_removed_when_the_forward_fails(any_loaded):
    adapter, model = any_loaded.adapter, any_loaded.model
    with pytest.raises(IndexError):
        with ablated(adapter, 0, [adapter.d_mlp(0) + 10]):
            run(model, encode(any_loaded.tokenizer, TEXT))
    assert hook_count(model) == 0


def test_unsupported_architecture_names_the_supported_ones():
    with pytest.raises(UnsupportedArchitecture) as info:
        adapter_class_for("bert")
    assert "gpt2" in info.value.details and "llama" in info.value.details
