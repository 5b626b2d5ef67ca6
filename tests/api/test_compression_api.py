"""POST /api/pruning/evaluate, /plan and /apply through the app, on tiny GPT-2 and LLaMA."""

import json
import math

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from neuronscope.analysis.hooks import ablated_many, hook_count
from tests.support.compression_app import TEXTS, app, client, data_dir, lm_of, text_sets  # noqa: F401 (fixtures)


def snapshot(folder):
    """Every path under ``folder``, with size and modification time for files."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else "dir"
        for p in folder.rglob("*")
    }


def ids_of(lm, text):
    return lm.tokenizer(text, return_tensors="pt")["input_ids"]


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_evaluate_equals_an_unbatched_loop(client, app):
    body = client.post("/api/pruning/evaluate", json={"texts": TEXTS}).get_json()
    lm = lm_of(app)
    total, count = 0.0, 0
    for text in TEXTS:
        ids = ids_of(lm, text)
        with torch.no_grad():
            total += lm.model(input_ids=ids, labels=ids).loss.item() * (ids.shape[1] - 1)
        count += ids.shape[1] - 1
    assert body["tokens"] == count and body["texts"] == len(TEXTS) and body["text_source"] == "texts"
    assert body["mean_loss"] == pytest.approx(total / count, rel=1e-5)
    assert body["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)


def test_evaluate_with_ablation_and_the_default_texts(client, app):
    clean = client.post("/api/pruning/evaluate", json={}).get_json()
    ablate = [{"layer_index": 0, "neuron_indices": list(range(0, 40, 2))}, {"layer_index": 1, "neuron_indices": [3, 9]}]
    ablated = client.post("/api/pruning/evaluate", json={"ablate": ablate}).get_json()
    assert clean["text_source"] == "default:evaluation" and clean["tokens"] > 20_000
    assert ablated["ablated_neurons"] == 22 and ablated["tokens"] == clean["tokens"]
    assert ablated["perplexity"] != pytest.approx(clean["perplexity"], rel=1e-4)
    assert hook_count(lm_of(app).model) == 0
    samples = client.post("/api/pruning/evaluate", json={"use_samples": True}).get_json()
    assert samples["text_source"] == "samples" and samples["texts"] == len(client.get("/api/samples").get_json())


@pytest.mark.parametrize("scope", ["layer", "global"])
@pytest.mark.parametrize("method", ["magnitude", "wanda", "activation", "taylor", "obs", "random"])
@pytest.mark.parametrize("sparsity", [0.25, 0.95])
def test_plans_respect_the_sparsity_exactly(client, app, scope, method, sparsity):
    plan = client.post("/api/pruning/plan", json={"sparsity": sparsity, "method": method, "scope": scope}).get_json()
    adapter = lm_of(app).adapter
    sizes = [adapter.d_mlp(layer) for layer in range(adapter.n_layers)]
    removed = {g["layer_index"]: g["neuron_indices"] for g in plan["neurons"]}
    assert plan["total_neurons"] == sum(sizes)
    if scope == "layer":
        for layer, size in enumerate(sizes):
            assert len(removed.get(layer, [])) == math.floor(sparsity * size + 0.5)
    else:
        assert sum(len(v) for v in removed.values()) == math.floor(sparsity * sum(sizes) + 0.5)
    for layer, neurons in removed.items():
        assert neurons == sorted(set(neurons)) and 0 <= neurons[0] and neurons[-1] < sizes[layer]
        assert len(neurons) < sizes[layer]
    assert plan["removed_neurons"] == sum(len(v) for v in removed.values())
    assert [entry["kept"] for entry in plan["layers"]] == [size - len(removed.get(i, [])) for i, size in enumerate(sizes)]
    assert (plan["calibration"] is not None) == (method in {"wanda", "activation", "taylor", "obs"})


def test_magnitude_plans_remove_the_smallest_mean_abs_weights(client, app):
    """Independent check with numpy: mean |w| over each neuron's W_in rows and W_out row."""
    plan = client.post("/api/pruning/plan", json={"sparsity": 0.25, "method": "magnitude"}).get_json()
    adapter = lm_of(app).adapter
    for group in plan["neurons"]:
        layer = group["layer_index"]
        rows = [w.detach().numpy() for w in (*adapter.w_in(layer).values(), adapter.w_out(layer))]
        magnitude = np.concatenate([np.abs(w) for w in rows], axis=1).mean(axis=1)
        removed = np.zeros(len(magnitude), dtype=bool)
        removed[group["neuron_indices"]] = True
        assert magnitude[removed].max() <= magnitude[~removed].min()


def test_random_plans_depend_on_the_seed(client):
    def plan(seed):
        return client.post("/api/pruning/plan", json={"sparsity": 0.3, "method": "random", "seed": seed}).get_json()["neurons"]

    assert plan(1) == plan(1) != plan(2)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_apply_saves_a_smaller_model_that_reloads_with_identical_logits(client, app, data_dir, model_name, scope):
    lm = lm_of(app)
    state = {key: value.clone() for key, value in lm.model.state_dict().items()}
    plan = client.post("/api/pruning/plan", json={"sparsity": 0.3, "method": "taylor", "scope": scope}).get_json()
    response = client.post("/api/pruning/apply", json={"plan": plan, "output_name": "small", "texts": TEXTS})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()

    # the served model is untouched and clean
    assert all(torch.equal(value, state[key]) for key, value in lm.model.state_dict().items())
    assert hook_count(lm.model) == 0

    folder = data_dir / "models" / "small"
    assert body["location"] == "models/small" and (folder / "model.safetensors").is_file()
    assert not [p for p in (data_dir / "models").iterdir() if p.name.startswith(".")]
    assert body["files"]["total_bytes"] == sum(p.stat().st_size for p in folder.iterdir())
    assert body["parameters"]["removed"] == plan["parameters"]["removed"] > 0
    assert body["parameters"]["after"] == plan["parameters"]["after"]
    assert body["removed_neurons"] == plan["removed_neurons"]
    record = json.loads((folder / "neuronscope_pruning.json").read_text())
    assert record["source_model"] == model_name and record["plan"]["method"] == "taylor"

    # pruned = ablated, on the served model
    removed = {g["layer_index"]: g["neuron_indices"] for g in plan["neurons"]}
    ids = ids_of(lm, TEXTS[0])
    with ablated_many(lm.adapter, removed):
        expected = logits(lm.model, ids)

    uniform = len(set(body["mlp_sizes"])) == 1
    assert body["loads_with_transformers"] == uniform
    if uniform:
        plain = AutoModelForCausalLM.from_pretrained(folder).eval()
        torch.testing.assert_close(logits(plain, ids), expected, atol=1e-4, rtol=0)
    else:
        with pytest.raises(RuntimeError, match="mismatch"):
            AutoModelForCausalLM.from_pretrained(folder)

    # perplexity after = the smaller model's, served after a switch
    switched = client.post("/api/models/switch", json={"model_name": "small"})
    assert switched.status_code == 200, switched.get_json()
    reloaded = lm_of(app)
    assert reloaded.name == "small" and parameter_total(reloaded.model) == body["parameters"]["after"]
    assert [reloaded.adapter.d_mlp(layer) for layer in range(reloaded.adapter.n_layers)] == body["mlp_sizes"]
    info = switched.get_json()["model_info"]
    assert info["mlp_sizes"] == body["mlp_sizes"] and info["intermediate_size"] == max(body["mlp_sizes"])
    assert client.get("/api/models/small").get_json()["mlp_sizes"] == body["mlp_sizes"]
    torch.testing.assert_close(logits(reloaded.model, ids), expected, atol=1e-4, rtol=0)
    again = client.post("/api/pruning/evaluate", json={"texts": TEXTS}).get_json()
    assert again["perplexity"] == pytest.approx(body["perplexity_after"], rel=1e-6)
    assert body["perplexity_before"] == pytest.approx(body["evaluation"]["before"]["perplexity"])


def parameter_total(model):
    return sum(p.numel() for p in model.parameters())


def test_apply_with_neurons_and_no_evaluation(client, app, data_dir):
    neurons = [{"layer_index": 1, "neuron_indices": [0, 1, 2, 3]}]
    body = client.post("/api/pruning/apply", json={"neurons": neurons, "output_name": "four-less", "evaluate": False}).get_json()
    assert body["evaluation"] is None and body["perplexity_after"] is None
    assert body["mlp_sizes"][1] == body["mlp_sizes"][0] - 4
    assert json.loads((data_dir / "models" / "four-less" / "neuronscope_pruning.json").read_text())["plan"] is None


def test_a_name_taken_in_another_letter_case_is_refused(client, data_dir):
    body = {"neurons": [{"layer_index": 1, "neuron_indices": [0]}], "output_name": "one-less", "evaluate": False}
    assert client.post("/api/pruning/apply", json=body).status_code == 201
    again = client.post("/api/pruning/apply", json={**body, "output_name": "One-Less"})
    assert again.status_code == 400 and "'one-less' already exists" in again.get_json()["details"]
    assert not (data_dir / "models" / "One-Less").exists()


def test_a_failed_save_leaves_nothing_and_the_model_clean(client, app, data_dir, monkeypatch):
    lm = lm_of(app)
    before = logits(lm.model, ids_of(lm, TEXTS[1]))

    def broken(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(lm.model), "save_pretrained", broken)
    text_sets(app)
    files = snapshot(data_dir)
    response = client.post("/api/pruning/apply", json={"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "x"})
    assert response.status_code == 500 and response.is_json
    assert snapshot(data_dir) == files
    assert hook_count(lm.model) == 0
    torch.testing.assert_close(logits(lm.model, ids_of(lm, TEXTS[1])), before, atol=0, rtol=0)


NEURON_LISTS = [
    "not a list",
    [],
    [5],
    [{"neuron_indices": [1]}],
    [{"layer_index": 0}],
    [{"layer_index": 0, "neuron_indices": []}],
    [{"layer_index": 0, "neuron_indices": [1, 1]}],
    [{"layer_index": 0, "neuron_indices": [-1]}],
    [{"layer_index": 0, "neuron_indices": [100000]}],
    [{"layer_index": 0, "neuron_indices": [True]}],
    [{"layer_index": 0, "neuron_indices": [1.0]}],
    [{"layer_index": 99, "neuron_indices": [1]}],
    [{"layer_index": -1, "neuron_indices": [1]}],
    [{"layer_index": "0", "neuron_indices": [1]}],
    [{"layer_index": 0, "neuron_indices": [1]}, {"layer_index": 0, "neuron_indices": [2]}],
]

BAD_NAMES = ["../escape", "a/b", "/tmp/abs", ".hidden", "..", "x\n", "back\\slash", "a" * 201, "a..b", "trailing.", "", " ", 5, None,
             "gpt2", "smollm2-135m-instruct", "SmolLM2-135M-Instruct", "GPT2", "name with space", "nul\x00byte"]


def bad_requests(model_name):
    good = [{"layer_index": 0, "neuron_indices": [1, 2]}]
    everything = [{"layer_index": 0, "neuron_indices": list(range(64 if model_name == "tiny-llama" else 128))}]
    yield "/api/pruning/apply", {"neurons": everything, "output_name": "all-gone"}
    yield "/api/pruning/apply", {"neurons": good, "output_name": model_name}
    yield "/api/pruning/apply", {"neurons": good}
    yield "/api/pruning/apply", {"output_name": "fine"}
    yield "/api/pruning/apply", {"neurons": good, "plan": {"neurons": good}, "output_name": "fine"}
    yield "/api/pruning/apply", {"plan": "plan", "output_name": "fine"}
    yield "/api/pruning/apply", {"plan": {"model_name": "gpt2", "neurons": good}, "output_name": "fine"}
    yield "/api/pruning/apply", {"plan": {"model_name": model_name}, "output_name": "fine"}
    yield "/api/pruning/apply", {"neurons": good, "output_name": "fine", "texts": ["x" * 5000]}
    yield "/api/pruning/apply", {"neurons": good, "output_name": "fine", "evaluate": "yes"}
    for name in BAD_NAMES:
        yield "/api/pruning/apply", {"neurons": good, "output_name": name}
    for neurons in NEURON_LISTS:
        yield "/api/pruning/apply", {"neurons": neurons, "output_name": "fine"}
        yield "/api/pruning/evaluate", {"ablate": neurons}
    for sparsity in [-0.01, 0.951, 1, 2, "0.5", True, None]:
        yield "/api/pruning/plan", {"sparsity": sparsity, "method": "random"}
    for method in ["l2", "", "RANDOM", 3, None]:
        yield "/api/pruning/plan", {"sparsity": 0.1, "method": method}
    yield "/api/pruning/plan", {"sparsity": 0.1, "method": "random", "scope": "row"}
    yield "/api/pruning/plan", {"sparsity": 0.1, "method": "random", "seed": -1}
    yield "/api/pruning/plan", {"sparsity": 0.1, "method": "taylor", "texts": ["a"], "use_samples": True}
    yield "/api/pruning/plan", {"sparsity": 0.1, "method": "taylor", "texts": []}
    yield "/api/pruning/evaluate", {"texts": ["x"]}
    yield "/api/pruning/evaluate", {"texts": "one text"}
    yield "/api/pruning/evaluate", {"texts": ["fine", ""]}
    yield "/api/pruning/evaluate", {"use_samples": 1}


def test_bad_inputs_are_400_and_write_nothing(client, app, data_dir, model_name):
    lm_of(app)
    text_sets(app)
    (data_dir / "models" / "exists").mkdir()
    files = snapshot(data_dir)
    cases = list(bad_requests(model_name)) + [("/api/pruning/apply", {"neurons": [{"layer_index": 0, "neuron_indices": [1]}], "output_name": "exists"})]
    for path, body in cases:
        response = client.post(path, json=body)
        assert response.status_code == 400, (path, body, response.get_json())
        assert set(response.get_json()) == {"error", "details"}
    nan = client.post("/api/pruning/plan", data='{"sparsity": NaN, "method": "random"}', content_type="application/json")
    assert nan.status_code == 400
    assert client.post("/api/pruning/plan", data="sparsity=0.1", content_type="application/x-www-form-urlencoded").status_code == 415
    assert snapshot(data_dir) == files
    assert hook_count(lm_of(app).model) == 0
