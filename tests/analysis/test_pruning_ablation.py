"""Impact metrics of the batched engine against ablation by zeroing weights and numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tests.support.pruning_reference import (
    activations,
    outputs,
    reference_metrics,
    with_replaced_neurons,
    zeroed_copy,
)

from neuronscope.analysis.impact import impact_level
from neuronscope.analysis.moments import activation_moments
from neuronscope.analysis.forward import encode
from neuronscope.analysis.hooks import hook_count
from neuronscope.analysis.ablation_engine import ablation_sweep, clean_run, mlp_output_is_additive
from neuronscope.modeling.adapters import adapter_for
from tests.support.tiny_models import ALL_TINY, NOT_ADDITIVE, post_norm_opt

TEXTS = ["Hello world, this is a test for pruning analysis.", "The capital of France is Paris.", "One"]
KEYS = ("impact_score", "mean_change", "max_change", "kl_divergence", "loss_delta")


def _ids(lm, texts=TEXTS):
    return [encode(lm.tokenizer, t) for t in texts]


def _assert_metrics(got: dict, expected: dict) -> None:
    for key in KEYS:
        assert got[key] == pytest.approx(expected[key], abs=1e-5, rel=1e-5), key
    assert got["safe_to_prune"] == expected["safe_to_prune"]


@pytest.mark.parametrize("layer, neurons", [(0, [0, 5, 17]), (1, [3]), (1, list(range(0, 64, 2)))])
def test_hook_ablation_equals_zeroed_weights(loaded, layer, neurons):
    texts = _ids(loaded)
    got = ablation_sweep(loaded.adapter, texts, [{layer: neurons}], with_logits=True).results()[0]
    pruned = zeroed_copy(loaded.model, loaded.adapter, {layer: neurons})
    expected = reference_metrics(outputs(loaded.model, texts), outputs(pruned, texts), texts)
    _assert_metrics(got, expected)
    assert got["impact_score"] > 0
    assert hook_count(loaded.model) == 0


def test_several_layers_at_once_equal_zeroed_weights(loaded):
    texts = _ids(loaded)
    ablation = {0: [1, 2], 1: [7, 9, 11]}
    got = ablation_sweep(loaded.adapter, texts, [ablation], with_logits=True).results()[0]
    pruned = zeroed_copy(loaded.model, loaded.adapter, ablation)
    _assert_metrics(got, reference_metrics(outputs(loaded.model, texts), outputs(pruned, texts), texts))


def test_mean_ablation_equals_replacing_by_the_mean(loaded):
    texts = _ids(loaded)
    layer, neurons = 1, [2, 4, 8]
    module = loaded.adapter.mlp_output(layer)
    mean = activations(loaded.model, module, texts).mean(axis=0)[neurons]
    got = ablation_sweep(loaded.adapter, texts, [{layer: neurons}], ablation="mean", with_logits=True).results()[0]
    expected = reference_metrics(
        outputs(loaded.model, texts), with_replaced_neurons(loaded.model, module, neurons, mean, texts), texts
    )
    _assert_metrics(got, expected)


def test_single_token_text_has_no_loss_delta(loaded):
    ids = [encode(loaded.tokenizer, "One")]
    assert ids[0].shape[1] == 1
    got = ablation_sweep(loaded.adapter, ids, [{0: [0]}], with_logits=True).results()[0]
    assert got["loss_delta"] is None
    assert got["kl_divergence"] >= 0.0


@pytest.mark.parametrize("model_name", ALL_TINY)
def test_activation_moments_equal_numpy(loaded):
    """Every token counts, whatever the shape of the hooked activations (OPT flattens them to ``[seq, d_mlp]``)."""
    texts = _ids(loaded)
    moments = activation_moments(loaded.adapter, texts, [0, 1])
    for layer in (0, 1):
        acts = activations(loaded.model, loaded.adapter.mlp_output(layer), texts)
        np.testing.assert_allclose(moments[layer].mean().numpy(), acts.mean(axis=0), rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(moments[layer].mean_abs().numpy(), np.abs(acts).mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(moments[layer].variance().numpy(), acts.var(axis=0), rtol=1e-5, atol=1e-9)


def test_impact_levels_follow_the_contract():
    assert [impact_level(x) for x in (0.0, 0.0999, 0.1, 0.3, 0.3001)] == ["safe", "safe", "moderate", "moderate", "high"]


def test_failure_mid_sweep_leaves_no_hook_and_model_unchanged(loaded):
    texts = _ids(loaded)
    before = outputs(loaded.model, texts)

    def cancel(fraction, step):
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        ablation_sweep(loaded.adapter, texts, [{0: [n]} for n in range(8)], ablation="mean", progress=cancel)
    assert hook_count(loaded.model) == 0
    for (h0, l0), (h1, l1) in zip(before, outputs(loaded.model, texts)):
        np.testing.assert_array_equal(h0, h1)
        np.testing.assert_array_equal(l0, l1)
    assert torch.is_grad_enabled()


@pytest.mark.parametrize("name", ALL_TINY)
def test_a_residual_mlp_output_is_detected_as_additive_and_a_normalised_one_is_not(shared_managers, name):
    lm = shared_managers(name).ensure_loaded()
    clean = clean_run(lm.adapter, encode(lm.tokenizer, TEXTS[0]), 0, mlp_layers=[0, 1])
    additive = name not in NOT_ADDITIVE
    assert mlp_output_is_additive(lm.adapter, clean, 0) is additive
    assert mlp_output_is_additive(lm.adapter, clean, 1) is additive
    assert hook_count(lm.model) == 0


def test_post_norm_block_falls_back_and_stays_exact():
    model, tokenizer = post_norm_opt()
    adapter = adapter_for(model)
    texts = [encode(tokenizer, t) for t in TEXTS]
    clean = clean_run(adapter, texts[0], 0, mlp_layers=[0])
    assert not mlp_output_is_additive(adapter, clean, 0)
    ablation = {0: [1, 4, 9]}
    got = ablation_sweep(adapter, texts, [ablation, {1: [2]}], with_logits=True).results()
    _assert_metrics(got[0], reference_metrics(outputs(model, texts), outputs(zeroed_copy(model, adapter, ablation), texts), texts))
    assert hook_count(model) == 0
