"""Batched neuron importance against the one-at-a-time loop; attribution against its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.support.pruning_reference import activations, outputs, reference_metrics, zeroed_copy
from scipy.stats import spearmanr

from neuronscope.analysis.forward import encode, run
from neuronscope.analysis.hooks import ablated, hook_count
from neuronscope.analysis.ablation_engine import ROW_TRIALS, TRIAL_ROUNDS, RowTuning
from neuronscope.analysis.attribution import attribution_importance
from neuronscope.analysis.importance import critical_mask, neuron_importance

TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog.", "Machine learning is fascinating"]


def _ids(lm):
    return [encode(lm.tokenizer, t) for t in TEXTS]


def sample_neurons(lm, layer) -> list[int]:
    """Every eighth neuron and the last one (the loop below is slow on a busy machine)."""
    d_mlp = lm.adapter.d_mlp(layer)
    return [*range(0, d_mlp, 8), d_mlp - 1]


def loop_importance(lm, texts, layer, neurons, values=None) -> np.ndarray:
    """The straightforward loop: one hook and one full forward per neuron per text."""
    clean = [run(lm.model, ids).final_hidden for ids in texts]
    scores = []
    for n in neurons:
        fill = None if values is None else values[[n]]
        with ablated(lm.adapter, layer, [n], fill):
            ratios = [
                (run(lm.model, ids).final_hidden - h).norm(dim=-1) / h.norm(dim=-1) for ids, h in zip(texts, clean)
            ]
        scores.append(torch.cat(ratios).mean().item())
    return np.array(scores)


@pytest.mark.parametrize("layer", [0, 1])
def test_batched_importance_equals_loop(loaded, layer):
    texts = _ids(loaded)
    neurons = sample_neurons(loaded, layer)
    expected = loop_importance(loaded, texts, layer, neurons)
    for batch_tokens in (40, 4096):  # several chunks per text, and one chunk per text
        got = neuron_importance(loaded.adapter, texts, layer, batch_tokens=batch_tokens)
        np.testing.assert_allclose(got.impact_score.numpy()[neurons], expected, rtol=1e-5, atol=1e-7)
    store: dict = {}
    for _ in range(3):  # every trial size of the tuning, then the size it settled on; shared clean runs
        tuned = neuron_importance(loaded.adapter, texts, layer, store=store)
        np.testing.assert_allclose(tuned.impact_score.numpy()[neurons], expected, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(tuned.activation_variance.numpy(), got.activation_variance.numpy(), rtol=1e-6)
    tried = {size for plan in store.values() if isinstance(plan, RowTuning) for size in plan.seconds_per_row}
    assert tried == {size for size in ROW_TRIALS if size <= loaded.adapter.d_mlp(layer)}
    acts = activations(loaded.model, loaded.adapter.mlp_output(layer), texts)
    np.testing.assert_allclose(got.activation_magnitude.numpy(), np.abs(acts).mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(got.activation_variance.numpy(), acts.var(axis=0), rtol=1e-5, atol=1e-9)
    assert hook_count(loaded.model) == 0


def test_batched_mean_ablation_importance_equals_loop(loaded):
    texts = _ids(loaded)
    neurons = sample_neurons(loaded, 1)
    means = torch.as_tensor(activations(loaded.model, loaded.adapter.mlp_output(1), texts).mean(axis=0))
    got = neuron_importance(loaded.adapter, texts, 1, ablation="mean", batch_tokens=50)
    expected = loop_importance(loaded, texts, 1, neurons, means)
    np.testing.assert_allclose(got.impact_score.numpy()[neurons], expected, rtol=1e-5, atol=1e-7)


def test_importance_change_columns_equal_zeroed_weights(loaded):
    texts = _ids(loaded)
    got = neuron_importance(loaded.adapter, texts, 0)
    clean = outputs(loaded.model, texts)
    for n in (0, 13, 31):
        expected = reference_metrics(clean, outputs(zeroed_copy(loaded.model, loaded.adapter, {0: [n]}), texts), texts)
        assert got.mean_change[n].item() == pytest.approx(expected["mean_change"], abs=1e-6)
        assert got.max_change[n].item() == pytest.approx(expected["max_change"], abs=1e-5)


def first_order_terms(lm, ids, layer):
    """Per token, independently of the package: activations ``[seq, d_mlp]``, the direct-path ratio
    ``|a| ||J_t W_out,n|| / ||h_t||`` ``[seq, d_mlp]`` and the whole model's first-order ratio
    ``||d h_t / d a . (-a_n)|| / ||h_t||`` ``[seq, d_mlp]`` (from full Jacobians)."""
    module = lm.adapter.mlp_output(layer)
    captured, last = [], []
    handles = [
        module.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()[0])),
        lm.adapter.blocks()[-1].register_forward_hook(lambda _m, _a, out: last.append(out[0] if isinstance(out, tuple) else out)),
    ]
    try:
        final = run(lm.model, ids).final_hidden
    finally:
        for handle in handles:
            handle.remove()
    acts, h_norm = captured[0], final.norm(dim=-1)
    w_out = lm.adapter.w_out(layer).detach()
    direct = torch.stack([
        (w_out @ torch.autograd.functional.jacobian(lm.adapter.final_norm(), r).T).norm(dim=1) for r in last[0][0].detach()
    ]) * acts.abs() / h_norm[:, None]

    def final_from(a: torch.Tensor) -> torch.Tensor:
        handle = module.register_forward_pre_hook(lambda _m, args: (a.unsqueeze(0),))
        try:
            with torch.enable_grad():
                return lm.model(input_ids=ids, output_hidden_states=True, use_cache=False).hidden_states[-1][0]
        finally:
            handle.remove()

    jacobian = torch.autograd.functional.jacobian(final_from, acts, vectorize=True)  # [seq, d_model, seq, d_mlp]
    change = torch.einsum("tdsn,sn->tnd", jacobian, -acts)  # first-order dh_t for each neuron n alone
    whole = change.norm(dim=-1) / h_norm[:, None]
    return acts.double(), direct.double(), whole.double()


def test_attribution_equals_its_formula(loaded):
    """mean_t d_n,t * R_n / rms_t d_n,t, with R_n the RMS of the first-order ratio (random projections converge to it)."""
    texts = _ids(loaded)
    layer = 0
    got = attribution_importance(loaded.adapter, texts, layer, probes=512)  # RMS estimate within ~2% (1 sigma)
    terms = [first_order_terms(loaded, ids, layer) for ids in texts]
    acts, direct, whole = (torch.cat(parts) for parts in zip(*terms))
    expected = direct.mean(dim=0) * whole.square().mean(dim=0).sqrt() / direct.square().mean(dim=0).sqrt()
    np.testing.assert_allclose(got.impact_score.numpy(), expected.numpy(), rtol=0.08)
    np.testing.assert_allclose(got.activation_magnitude.numpy(), acts.abs().mean(dim=0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(got.activation_variance.numpy(), acts.var(dim=0, unbiased=False).numpy(), rtol=1e-5, atol=1e-9)
    assert hook_count(loaded.model) == 0


def test_attribution_is_deterministic(loaded):
    texts = _ids(loaded)
    first = attribution_importance(loaded.adapter, texts, 1).impact_score
    assert torch.equal(first, attribution_importance(loaded.adapter, texts, 1).impact_score)


def test_attribution_ranks_like_ablation_on_the_last_layer(loaded):
    """With no block after the layer, the estimate is first-order exact: ranks agree almost perfectly."""
    texts = _ids(loaded)
    last = loaded.adapter.n_layers - 1
    exact = neuron_importance(loaded.adapter, texts, last).impact_score
    estimate = attribution_importance(loaded.adapter, texts, last).impact_score
    assert spearmanr(exact.numpy(), estimate.numpy()).statistic > 0.95


def test_critical_rule():
    impact = torch.tensor([0.5, 0.1, 0.5, 0.0, 0.2, 0.2, 0.7])
    assert critical_mask(impact).tolist() == [True, False, False, False, False, False, True]  # ceil(7/4) = 2, tie -> index 0
    assert critical_mask(impact, 0.2).tolist() == [True, False, True, False, True, True, True]
    flat = torch.zeros(10)
    assert critical_mask(flat).tolist() == [True, True, True] + [False] * 7
    assert int(critical_mask(torch.rand(1536)).sum()) == math.ceil(1536 / 4)


def test_row_tuning_tries_each_size_on_full_batches_then_keeps_the_fastest():
    plan = RowTuning()
    rounds = [
        {32: 3.2, 64: 9.6, 128: 12.8, 256: 30.0},  # per row: 0.1, 0.15 (a loaded moment), 0.1, 0.117
        {32: 3.5, 64: 4.8, 128: 14.0, 256: 28.0},  # per row: 0.109, 0.075, 0.109, 0.109
    ]
    plan.record(32, 20, 1.0)  # a short last batch says nothing
    for seconds in rounds[:TRIAL_ROUNDS]:
        for size in ROW_TRIALS:
            assert plan.rows() == size
            plan.record(size, size, seconds[size])
    assert plan.rows() == 64  # judged by its best round
    plan.record(64, 64, 100.0)  # measured: later batches do not move the choice
    assert plan.rows() == 64


def test_row_tuning_is_one_plan_per_text_length_for_every_start_layer(loaded):
    texts = _ids(loaded)
    store: dict = {}
    for layer in (0, 1):
        neuron_importance(loaded.adapter, texts, layer, store=store)
    plans = {key for key, value in store.items() if isinstance(value, RowTuning)}
    assert plans == {("rows", ids.shape[1]) for ids in texts}
