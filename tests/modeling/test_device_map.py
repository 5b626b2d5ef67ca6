"""Models spread by accelerate's device map (NEURONSCOPE_DEVICE_MAP, NEURONSCOPE_MAX_MEMORY).

A tiny LLaMA and a tiny GPT-2 get a CPU budget of a few tens of KB, so accelerate keeps part of
each on the CPU and offloads the rest to disk (parameters left on ``meta``, streamed in for each
forward). Every answer is compared with the same model loaded on one device: activations,
exact ablation, weight statistics, the corpus index; and hook ablation on the offloaded model
with zeroed output-projection rows on the plain one.
"""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from tests.support.settings import make_settings
from tests.support.pruning_reference import zeroed_copy

from neuronscope import create_app
from neuronscope.analysis.forward import encode, run
from neuronscope.analysis.hooks import ablated, captured_activations, hook_count
from neuronscope.config import Settings, parse_max_memory
from neuronscope.modeling.fingerprint import weights_fingerprint
from neuronscope.modeling.manager import ModelManager

CPU_BUDGET = {"tiny-llama": {"cpu": 120_000}, "tiny-gpt2": {"cpu": 100_000}}
"""Bytes of CPU memory that leave part of each tiny model (~156 KB) on the CPU and part on disk."""
TEXTS = ["Hello world, this is a test.", "The capital of France is Paris."]
VOLATILE = {"created_at", "seconds", "tokens_per_second"}


@pytest.fixture(scope="module")
def apps(models_dir, tmp_path_factory):
    """``apps(name)`` -> (app on one device, app with the model spread over CPU and disk), built once."""
    built = {}

    def get(name: str):
        if name not in built:
            plain = make_settings(tmp_path_factory.mktemp("plain"), models_dir, name)
            spread = make_settings(
                tmp_path_factory.mktemp("spread"), models_dir, name, device_map="auto", max_memory=CPU_BUDGET[name]
            )
            built[name] = (create_app(plain), create_app(spread))
        return built[name]

    return get


def loaded(app):
    with app.extensions["neuronscope"].manager.use() as lm:
        return lm


def assert_same(expected, actual, where: str = "") -> None:
    """JSON values equal, numbers within 1e-6 (relative to their size), volatile fields skipped."""
    if isinstance(expected, dict):
        assert set(expected) == set(actual), where
        for key in expected.keys() - VOLATILE:
            assert_same(expected[key], actual[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(expected) == len(actual), where
        for i, (a, b) in enumerate(zip(expected, actual)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert math.isclose(expected, actual, rel_tol=1e-6, abs_tol=1e-6), (where, expected, actual)
    else:
        assert expected == actual, where


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"NEURONSCOPE_DEVICE_MAP": "auto"}, ("auto", None)),
        ({"NEURONSCOPE_DEVICE_MAP": "sequential", "NEURONSCOPE_MAX_MEMORY": "0=20GiB, cpu=1.5GB"}, ("sequential", {0: 20 * 2**30, "cpu": 1_500_000_000})),
        ({"NEURONSCOPE_DEVICE_MAP": "balanced", "NEURONSCOPE_MAX_MEMORY": '{"1": 4096, "CPU": "64KiB"}'}, ("balanced", {1: 4096, "cpu": 65536})),
    ],
)
def test_placement_settings_are_read_from_the_environment(env, expected):
    settings = Settings.from_env(env)
    assert (settings.device_map, settings.max_memory) == expected
    assert settings.offload_dir == settings.data_dir / "offload"


@pytest.mark.parametrize(
    "env",
    [
        {"NEURONSCOPE_DEVICE_MAP": "everywhere"},
        {"NEURONSCOPE_MAX_MEMORY": "cpu=1GB"},
        {"NEURONSCOPE_DEVICE_MAP": "auto", "NEURONSCOPE_DEVICE": "cpu"},
        {"NEURONSCOPE_DEVICE_MAP": "auto", "NEURONSCOPE_MAX_MEMORY": "gpu=1GB"},
        {"NEURONSCOPE_DEVICE_MAP": "auto", "NEURONSCOPE_MAX_MEMORY": "cpu=lots"},
        {"NEURONSCOPE_DEVICE_MAP": "auto", "NEURONSCOPE_MAX_MEMORY": "cpu=0"},
        {"NEURONSCOPE_DEVICE_MAP": "auto", "NEURONSCOPE_MAX_MEMORY": "cpu"},
        {"NEURONSCOPE_DEVICE_MAP": "auto", "NEURONSCOPE_MAX_MEMORY": "{cpu: 1}"},
        {"NEURONSCOPE_DEVICE_MAP": "auto", "NEURONSCOPE_MAX_MEMORY": "{}"},
    ],
)
def test_bad_placement_settings_are_refused_with_the_variable_named(env):
    with pytest.raises(ValueError, match="NEURONSCOPE_"):
        Settings.from_env(env)


def test_max_memory_given_as_a_mapping_is_normalised():
    assert parse_max_memory({"0": "1KB", "disk": 10}) == {0: 1000, "disk": 10}


def test_the_model_is_spread_over_cpu_and_disk(apps, model_name):
    plain, spread = (loaded(app) for app in apps(model_name))
    assert {"cpu", "disk"} <= set(spread.model.hf_device_map.values())
    assert spread.offloaded and not plain.offloaded
    assert any(p.device.type == "meta" for p in spread.model.parameters())
    assert spread.device == plain.device == torch.device("cpu")
    memory = apps(model_name)[1].test_client().get("/api/models/memory").json
    assert memory["model_memory"] == plain.parameter_bytes() == sum(memory["placement"].values())
    assert memory["placement"]["disk"] > 0 and memory["placement"]["cpu"] > 0
    assert (spread_dir := apps(model_name)[1].extensions["neuronscope"].settings.offload_dir / model_name).is_dir()
    assert spread_dir.parent.parent == apps(model_name)[1].extensions["neuronscope"].settings.data_dir


def test_weights_read_through_the_adapter_are_the_real_ones(apps, model_name):
    plain, spread = (loaded(app) for app in apps(model_name))
    for layer in range(plain.adapter.n_layers):
        assert torch.equal(spread.adapter.w_out(layer), plain.adapter.w_out(layer))
        assert spread.adapter.w_in(layer).keys() == plain.adapter.w_in(layer).keys()
        for role, weight in plain.adapter.w_in(layer).items():
            assert torch.equal(spread.adapter.w_in(layer)[role], weight)
    assert weights_fingerprint(spread.model, spread.tokenizer) == weights_fingerprint(plain.model, plain.tokenizer)


def test_hook_ablation_on_the_spread_model_equals_zeroed_weights(apps, model_name):
    plain, spread = (loaded(app) for app in apps(model_name))
    ids = encode(plain.tokenizer, TEXTS[0], spread.device)
    with captured_activations(spread.adapter, [0, 1]) as records:
        clean = run(spread.model, ids)
    with captured_activations(plain.adapter, [0, 1]) as expected:
        reference = run(plain.model, ids)
    torch.testing.assert_close(clean.logits, reference.logits, rtol=0, atol=1e-5)
    for layer in (0, 1):
        torch.testing.assert_close(records[layer][0], expected[layer][0], rtol=0, atol=1e-6)
    neurons = {0: [1, 4], 1: [0, 3, 7]}
    zeroed = run(zeroed_copy(plain.model, plain.adapter, neurons), ids)
    with ablated(spread.adapter, 0, neurons[0]), ablated(spread.adapter, 1, neurons[1]):
        hooked = run(spread.model, ids)
    torch.testing.assert_close(hooked.logits, zeroed.logits, rtol=0, atol=1e-5)
    assert (hooked.logits - clean.logits).abs().max() > 1e-4
    assert hook_count(spread.model) == 0


REQUESTS = [
    ("POST", "/api/activations/generate", {"prompt": TEXTS[0]}),
    ("POST", "/api/pruning/impact-analysis", {"layer_index": 1, "neuron_indices": [1, 5], "input_text": TEXTS[1], "ablation": "mean"}),
    ("POST", "/api/pruning/neuron-importance", {"layer_index": 0, "input_texts": TEXTS}),
    ("POST", "/api/pruning/neuron-importance", {"layer_index": 1, "input_texts": TEXTS, "ablation": "mean"}),
    ("POST", "/api/pruning/batch-analysis", {"pruning_candidates": [{"layer_index": 0, "neuron_index": 2}, {"layer_index": 1, "neuron_index": 9}], "input_texts": TEXTS}),
    ("GET", "/api/pruning/weight-analysis", None),
    ("POST", "/api/pruning/evaluate", {"texts": TEXTS, "neurons": [{"layer_index": 1, "neuron_indices": [0, 2]}]}),
    ("POST", "/api/pruning/neuron-importance", {"layer_index": 1, "input_texts": TEXTS, "method": "attribution"}),
    ("POST", "/api/pruning/plan", {"sparsity": 0.25, "method": "wanda", "texts": TEXTS}),
    ("POST", "/api/pruning/plan", {"sparsity": 0.25, "method": "taylor", "texts": TEXTS}),
    ("POST", "/api/activations/corpus", {"texts": TEXTS}),
    ("POST", "/api/queries/neuron", {"layer_index": 1, "neuron_index": 3, "top_k": 5}),
]


def test_the_api_answers_as_on_one_device(apps, model_name):
    clients = [app.test_client() for app in apps(model_name)]
    for method, path, body in REQUESTS:
        expected, actual = (client.open(path, method=method, json=body) for client in clients)
        assert expected.status_code == actual.status_code < 300, (path, actual.json)
        assert_same(expected.json, actual.json, path)
    spread = loaded(apps(model_name)[1])
    assert hook_count(spread.model) == 0
    assert all(p.device.type == "meta" for p in spread.adapter.final_norm().parameters())


def test_apply_refuses_an_offloaded_model_and_writes_nothing(apps):
    app = apps("tiny-llama")[1]
    settings = app.extensions["neuronscope"].settings
    body = {"output_name": "spread-pruned", "neurons": [{"layer_index": 1, "neuron_indices": [0, 1]}], "evaluate": False}
    response = app.test_client().post("/api/pruning/apply", json=body)
    assert response.status_code == 409 and set(response.json) == {"error", "details"}
    assert "NEURONSCOPE_DEVICE_MAP" in response.json["details"]
    assert not (settings.resolved_models_dir / "spread-pruned").exists()


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/pruning/plan", {"sparsity": 0.25, "method": "wanda", "texts": TEXTS, "estimate": True}),
        ("/api/pruning/plan", {"sparsity": 0.25, "method": "wanda", "texts": TEXTS, "estimate": True, "compensation": "bias"}),
        ("/api/pruning/sweep", {"methods": ["magnitude"], "sparsities": [0.25]}),
        ("/api/pruning/sweep", {"methods": ["wanda"], "sparsities": [0.25], "compensations": ["reconstruct"], "texts": TEXTS}),
    ],
)
def test_estimates_and_sweeps_refuse_an_offloaded_model(apps, path, body):
    """They measure a pruned copy of the whole model, which offloaded weights leave on ``meta``
    (before: a NaN perplexity without compensation, a 500 with it)."""
    plain, spread = (app.test_client() for app in apps("tiny-llama"))
    assert plain.post(path, json=body).status_code == 200
    response = spread.post(path, json=body)
    assert response.status_code == 409 and set(response.json) == {"error", "details"}
    assert "NEURONSCOPE_DEVICE_MAP" in response.json["details"]
    assert hook_count(loaded(apps("tiny-llama")[1]).model) == 0


def test_a_pruned_model_with_per_layer_sizes_is_dispatched_too(models_dir, tmp_path):
    """Unequal MLP sizes go through NeuronScope's own loader, then accelerate's dispatch."""
    folder = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-llama", folder / "tiny-llama")
    source = create_app(make_settings(tmp_path / "data", folder, "tiny-llama"))
    body = {"output_name": "uneven", "neurons": [{"layer_index": 1, "neuron_indices": list(range(40))}], "evaluate": False}
    assert source.test_client().post("/api/pruning/apply", json=body).status_code == 201
    plain = ModelManager(make_settings(tmp_path / "plain", folder, "uneven")).ensure_loaded()
    spread = ModelManager(
        make_settings(tmp_path / "spread", folder, "uneven", device_map="auto", max_memory={"cpu": 90_000})
    ).ensure_loaded()
    assert "disk" in spread.model.hf_device_map.values() and spread.offloaded
    assert [spread.adapter.d_mlp(layer) for layer in range(2)] == [64, 24]
    ids = encode(plain.tokenizer, TEXTS[1], spread.device)
    torch.testing.assert_close(run(spread.model, ids).logits, run(plain.model, ids).logits, rtol=0, atol=1e-5)
