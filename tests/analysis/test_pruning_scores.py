"""Neuron scores and candidate ranking against independent computations on the raw modules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tests.support.pruning_reference import activations, post_mlp_gain

from neuronscope.analysis.forward import encode
from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.scores import SCORERS, rank_layer

TEXTS = ["Hello world", "The quick brown fox jumps over the lazy dog.", "def add(a, b): return a + b"]


def raw_neuron_weights(model, family: str, layer: int) -> list[np.ndarray]:
    """Each neuron's weights as ``[d_mlp, d_model]`` arrays read straight from the modules (not the adapter)."""
    if family == "gpt2":
        mlp = model.transformer.h[layer].mlp
        return [mlp.c_fc.weight.detach().numpy().T, mlp.c_proj.weight.detach().numpy()]  # Conv1D: [in, out]
    mlp = model.model.layers[layer].mlp
    return [mlp.gate_proj.weight.detach().numpy(), mlp.up_proj.weight.detach().numpy(), mlp.down_proj.weight.detach().numpy().T]


def raw_mlp_modules(model, family: str, layer: int):
    """(module whose input is the MLP input, module whose input is the activations)."""
    if family == "gpt2":
        mlp = model.transformer.h[layer].mlp
        return mlp.c_fc, mlp.c_proj
    mlp = model.model.layers[layer].mlp
    return mlp.gate_proj, mlp.down_proj


def test_magnitude_equals_definition(loaded):
    scores = SCORERS["magnitude"](loaded.adapter, Calibration(), lambda *_: None)
    assert sorted(scores) == list(range(loaded.adapter.n_layers))
    for layer, got in scores.items():
        rows = raw_neuron_weights(loaded.model, loaded.adapter.family, layer)
        expected = np.abs(np.concatenate(rows, axis=1)).mean(axis=1)
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


@pytest.mark.parametrize("model_name", ["tiny-gpt2", "tiny-llama", "tiny-gemma3"])
def test_activation_and_wanda_equal_definition(loaded):
    """Wanda's output row is the neuron's write into the residual stream: on Gemma, ``W_out[n]`` times
    the post-MLP norm's gain ``1 + g`` (random in the tiny model, so it matters)."""
    texts = [encode(loaded.tokenizer, t) for t in TEXTS]
    calibration = Calibration(tuple(ids[0] for ids in texts))
    activation = SCORERS["activation"](loaded.adapter, calibration, lambda *_: None)
    wanda = SCORERS["wanda"](loaded.adapter, calibration, lambda *_: None)
    for layer in range(loaded.adapter.n_layers):
        x, a = (activations(loaded.model, module, texts) for module in raw_mlp_modules(loaded.model, loaded.adapter.family, layer))
        np.testing.assert_allclose(activation[layer].numpy(), np.abs(a).mean(axis=0), rtol=1e-5)
        rows = raw_neuron_weights(loaded.model, loaded.adapter.family, layer)
        x_norm, a_norm = np.linalg.norm(x, axis=0), np.linalg.norm(a, axis=0)
        output_row = rows[-1] * post_mlp_gain(loaded.model, layer)
        per_weight = [np.abs(w) * x_norm for w in rows[:-1]] + [np.abs(output_row) * a_norm[:, None]]
        np.testing.assert_allclose(wanda[layer].numpy(), np.concatenate(per_weight, axis=1).mean(axis=1), rtol=1e-5)


@pytest.mark.parametrize("threshold", [0.0, 10.0, 37.5, 50.0, 99.9, 100.0])
def test_ranking_matches_numpy_percentile(threshold):
    generator = torch.Generator().manual_seed(3)
    scores = torch.rand(257, generator=generator)
    scores[10:20] = scores[5]  # ties
    ranking = rank_layer(scores, threshold)
    values = scores.double().numpy()
    cutoff = np.percentile(values, threshold)  # linear interpolation
    assert ranking.cutoff == pytest.approx(cutoff, abs=1e-15)
    np.testing.assert_array_equal(ranking.is_candidate.numpy(), values <= cutoff)
    expected_ranks = np.empty(values.size, dtype=np.int64)
    expected_ranks[np.argsort(values, kind="stable")] = np.arange(1, values.size + 1)
    np.testing.assert_array_equal(ranking.ranks.numpy(), expected_ranks)
    np.testing.assert_allclose(ranking.pruning_score.numpy(), 1 - (expected_ranks - 1) / (values.size - 1))


def test_candidates_endpoint_matches_definition(make_app, model_name):
    app = make_app(model_name)
    client = app.test_client()
    body = client.get("/api/pruning/candidates?threshold=25").get_json()
    lm = app.extensions["neuronscope"].manager.ensure_loaded()
    expected = []
    for layer in range(lm.adapter.n_layers):
        magnitude = np.abs(np.concatenate(raw_neuron_weights(lm.model, lm.adapter.family, layer), axis=1)).mean(axis=1)
        ranks = np.empty(magnitude.size, dtype=np.int64)
        ranks[np.argsort(magnitude, kind="stable")] = np.arange(1, magnitude.size + 1)
        chosen = np.flatnonzero(magnitude <= np.percentile(magnitude, 25))
        expected += [(layer, int(n), magnitude[n], int(ranks[n])) for n in chosen[np.argsort(ranks[chosen])]]
    got = [(c["layer_index"], c["neuron_index"], c["weight_magnitude"], c["weight_rank"]) for c in body["candidates"]]
    assert [g[:2] for g in got] == [e[:2] for e in expected]
    assert [g[3] for g in got] == [e[3] for e in expected]
    np.testing.assert_allclose([g[2] for g in got], [e[2] for e in expected], rtol=1e-5)
    assert body["total_candidates"] == len(expected)
    assert body["threshold_percentile"] == 25.0
    d_mlp = lm.adapter.d_mlp(0)
    for c in body["candidates"]:
        assert c["pruning_score"] == pytest.approx(1 - (c["weight_rank"] - 1) / (d_mlp - 1))
        assert c["is_pruning_candidate"] is True


def test_candidates_pagination_and_layer_filter(client):
    full = client.get("/api/pruning/candidates?threshold=50&layer_index=1").get_json()
    assert {c["layer_index"] for c in full["candidates"]} == {1}
    page = client.get("/api/pruning/candidates?threshold=50&layer_index=1&limit=5&offset=3").get_json()
    assert page["candidates"] == full["candidates"][3:8]
    assert page["total_candidates"] == full["total_candidates"] == math.ceil(full["layers"][0]["total_neurons"] / 2)


def test_calibrated_methods_rank_by_their_score(client):
    body = client.get("/api/pruning/candidates?threshold=20&method=wanda&layer_index=0").get_json()
    assert body["method"] == "wanda" and body["calibration_texts"] > 0
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores)
    assert all(s <= body["layers"][0]["cutoff"] for s in scores)
