"""The structured Optimal Brain Surgeon scorer: greedy costs against the constrained least-squares
optimum computed directly from H, the greedy choice, and the scorer on the tiny models."""

import numpy as np
import pytest
import torch

from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.surgeon import COMPACT_EVERY, GramSums, greedy_obs, obs_layer_scores, obs_scores
from tests.support.activation_helpers import captured
from tests.support.pruning_reference import alike_tokens, post_mlp_gain

D_MLP, D_MODEL, TOKENS = 2 * COMPACT_EVERY + 9, 7, 400


def random_layer(seed=0):
    """A layer ``W`` ``[d_mlp, d_model]`` and ``H`` from correlated activations with a non-zero mean."""
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(D_MLP, D_MLP, generator=generator, dtype=torch.float64)
    acts = torch.randn(TOKENS, D_MLP, generator=generator, dtype=torch.float64) @ mix + 3.0
    sums = GramSums()
    sums.add(acts[:150])
    sums.add(acts[150:])
    return torch.randn(D_MLP, D_MODEL, generator=generator, dtype=torch.float64), sums.hessian(), acts


def constrained_optimum(weight, hessian, removed):
    """``min over W' with W'_S = 0 of trace((W - W')^T H (W - W'))``, solved for the free rows
    ``D_K = -H_KK^-1 H_KS W_S`` of ``D = W - W'`` and evaluated as the quadratic form itself."""
    removed = torch.tensor(sorted(removed))
    kept = torch.tensor([n for n in range(len(weight)) if n not in set(removed.tolist())], dtype=torch.long)
    delta = torch.zeros_like(weight)
    delta[removed] = weight[removed]
    if len(kept):
        delta[kept] = -torch.linalg.solve(hessian[kept][:, kept], hessian[kept][:, removed] @ weight[removed])
    return float((delta * (hessian @ delta)).sum())


def test_the_hessian_is_the_damped_gram_matrix_of_the_centred_activations():
    _, hessian, acts = random_layer()
    centred = acts - acts.mean(dim=0)
    gram = centred.T @ centred
    expected = gram + 1e-2 * gram.diagonal().mean() * torch.eye(D_MLP, dtype=torch.float64)
    torch.testing.assert_close(hessian, expected)


@pytest.mark.parametrize("prefix", [1, 2, 5, COMPACT_EVERY, COMPACT_EVERY + 3, 2 * COMPACT_EVERY + 1, D_MLP - 1, D_MLP])
def test_the_greedy_prefix_costs_the_constrained_least_squares_optimum(prefix):
    weight, hessian, _ = random_layer()
    order, costs = greedy_obs(weight, hessian)
    removed = order[:prefix].tolist()
    optimum = constrained_optimum(weight, hessian, removed)
    assert float(costs[:prefix].sum()) == pytest.approx(optimum, rel=1e-8)
    index = torch.tensor(removed)
    via_inverse = torch.linalg.inv(torch.linalg.inv(hessian)[index][:, index])
    assert optimum == pytest.approx(float(torch.trace(weight[index].T @ via_inverse @ weight[index])), rel=1e-8)


def test_each_greedy_step_is_the_cheapest_next_removal():
    weight, hessian, _ = random_layer(seed=1)
    order, _ = greedy_obs(weight, hessian)
    hinv = torch.linalg.inv(hessian)
    assert int(order[0]) == int(torch.argmin(weight.square().sum(dim=1) / hinv.diagonal()))
    for step in range(1, 4):
        prefix = order[:step].tolist()
        others = [n for n in range(D_MLP) if n not in prefix]
        errors = torch.tensor([constrained_optimum(weight, hessian, prefix + [n]) for n in others])
        assert int(order[step]) == others[int(torch.argmin(errors))]
    assert sorted(order.tolist()) == list(range(D_MLP))


def test_scores_rise_along_the_greedy_order_and_end_at_the_whole_output_energy():
    weight, hessian, _ = random_layer(seed=2)
    order, _ = greedy_obs(weight, hessian)
    scores = obs_layer_scores(weight, hessian)
    along = scores[order]
    assert (along[1:] >= along[:-1]).all()
    assert int(torch.argmin(scores)) == int(order[0])
    energy = float(torch.trace(weight.T @ hessian @ weight))
    assert float(along[0]) == pytest.approx(constrained_optimum(weight, hessian, [int(order[0])]) / energy, rel=1e-8)
    assert float(along[-1]) == pytest.approx(1.0, rel=1e-8)


def raw_output_rows(model, layer: int) -> torch.Tensor:
    """``[d_mlp, d_model]`` output rows as they reach the residual stream, read from the modules
    themselves: GPT-2's Conv1D ``c_proj`` (stored ``[in, out]``), else ``down_proj`` transposed, times
    the post-MLP norm's gain on Gemma."""
    if hasattr(model, "transformer"):
        rows = model.transformer.h[layer].mlp.c_proj.weight.detach().numpy()
    else:
        rows = model.model.layers[layer].mlp.down_proj.weight.detach().numpy().T
    return torch.from_numpy(rows * post_mlp_gain(model, layer)).double()


@pytest.mark.parametrize("model_name", ["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
@pytest.mark.parametrize("damping", [None, 1e-3])
def test_the_obs_scorer_uses_the_calibration_activations_of_every_layer(loaded, damping):
    texts = ["The quick brown fox jumps over the lazy dog.", "Hello world, one two three four five six."]
    sequences = tuple(loaded.tokenizer(t, return_tensors="pt")["input_ids"][0] for t in texts)
    adapter = loaded.adapter
    layers = list(range(adapter.n_layers))
    steps = []
    options = {} if damping is None else {"damping": damping}
    scores = obs_scores(adapter, Calibration(sequences), lambda fraction, _step: steps.append(fraction), **options)
    per_text = [captured(loaded.model, adapter, ids.tolist()) for ids in sequences]  # a plain hook capture
    acts = {layer: torch.from_numpy(np.concatenate([c[layer] for c in per_text])).double() for layer in layers}
    assert sorted(scores) == layers and steps[-1] == 1.0
    for layer in layers:
        assert scores[layer].shape == (adapter.d_mlp(layer),) and torch.isfinite(scores[layer]).all()
        sums = GramSums()
        sums.add(acts[layer])
        expected = obs_layer_scores(raw_output_rows(loaded.model, layer), sums.hessian(**options)).float()
        torch.testing.assert_close(scores[layer], expected, rtol=1e-4, atol=1e-6)


def test_the_obs_order_exists_for_tokens_whose_activations_are_all_alike():
    sums = GramSums()
    sums.add(alike_tokens(width=D_MLP))
    weight = torch.randn(D_MLP, D_MODEL, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    order, costs = greedy_obs(weight, sums.hessian())
    assert sorted(order.tolist()) == list(range(D_MLP))
    assert bool(torch.isfinite(costs).all())
