"""The activation and query endpoints: documented fields, slicing, model switching, bad inputs."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from neuronscope.analysis.activations import neuron_activations
from neuronscope.storage.files import TEMP_PREFIX

PROMPT = "The quick brown fox jumps over the lazy dog."


@pytest.fixture
def client(make_app, model_name):
    return make_app(model=model_name).test_client()


def generate(client, prompt: str = PROMPT, **extra) -> dict:
    response = client.post("/api/activations/generate", json={"prompt": prompt, **extra})
    assert response.status_code == 201, response.json
    return response.json


def test_generate_saves_the_documented_shape(client, shared_managers, model_name):
    body = generate(client)
    assert re.fullmatch(r"the-quick-brown-fox-jumps-over-the-lazy-[0-9a-f]{12}\.json", body["filename"])
    assert body["model_name"] == model_name and body["prompt"] == PROMPT
    assert "".join(body["tokens"]) == PROMPT and body["n_tokens"] == len(body["tokens"])
    assert len(body["summary"]) == body["n_layers"] and body["indexed"] is True
    data = client.get(f"/api/activations/{body['filename']}").json
    assert {"prompt", "tokens", "layers", "model_name", "created_at"} <= set(data)
    assert [layer["layer_index"] for layer in data["layers"]] == list(range(body["n_layers"]))
    lm = shared_managers(model_name).ensure_loaded()
    expected = neuron_activations(lm.model, lm.adapter, torch.tensor([lm.tokenizer(PROMPT)["input_ids"]]))
    for layer in data["layers"]:
        assert len(layer["neurons"]) == body["neurons_per_layer"][layer["layer_index"]]
        served = np.array([n["activations"] for n in layer["neurons"]]).T  # [tokens, neurons]
        np.testing.assert_allclose(served, expected[layer["layer_index"]].numpy(), atol=1e-5)
    assert client.get("/api/activations/files").json == {"files": [body["filename"]], "count": 1}


def test_names_are_stable_per_prompt_and_distinct_across_prompts(client):
    first = generate(client)["filename"]
    assert generate(client)["filename"] == first
    others = {generate(client, p)["filename"] for p in ["The quick brown fox!", "the quick brown fox", "???"]}
    assert len(others) == 3 and first not in others
    assert any(name.startswith("prompt-") for name in others)
    assert client.get("/api/activations/files").json["count"] == 4


def test_slices_by_layer_and_top_k(client):
    name = generate(client)["filename"]
    full = client.get(f"/api/activations/{name}").json
    one = client.get(f"/api/activations/{name}?layer=1").json
    assert [layer["layer_index"] for layer in one["layers"]] == [1]
    assert one["layers"][0] == full["layers"][1]
    both = client.get(f"/api/activations/{name}?layer=1&layer=0").json
    assert [layer["layer_index"] for layer in both["layers"]] == [1, 0]
    assert client.get(f"/api/activations/{name}?layer=0,1").json["layers"] == full["layers"]
    top = client.get(f"/api/activations/{name}?layer=0&top_k=5").json["layers"][0]["neurons"]
    peaks = {n["neuron_index"]: max(abs(v) for v in n["activations"]) for n in full["layers"][0]["neurons"]}
    assert [n["neuron_index"] for n in top] == sorted(peaks, key=lambda n: -peaks[n])[:5]
    assert top[0]["activations"] == full["layers"][0]["neurons"][top[0]["neuron_index"]]["activations"]


@pytest.mark.parametrize("query", ["layer=7", "layer=-1", "layer=a", "layer=1.5", "top_k=0", "top_k=x", "layer="])
def test_bad_slices(client, query):
    name = generate(client)["filename"]
    response = client.get(f"/api/activations/{name}?{query}")
    assert response.status_code == 400 and set(response.json) == {"error", "details"}


def test_oversized_slices_are_refused(make_app):
    client = make_app(max_served_values=1000).test_client()
    body = generate(client)
    per_layer = body["n_tokens"] * body["neurons_per_layer"][0]
    assert per_layer > 1000
    refused = client.get(f"/api/activations/{body['filename']}")
    assert refused.status_code == 400 and "?top_k=" in refused.json["details"]
    top_k = 1000 // (body["n_tokens"] * body["n_layers"])
    assert client.get(f"/api/activations/{body['filename']}?top_k={top_k}").status_code == 200
    assert client.get(f"/api/activations/{body['filename']}?top_k={top_k + 1}").status_code == 400


def test_storage_is_compact_and_atomic(client, make_app, tmp_path):
    name = generate(client)["filename"]
    folder = tmp_path / "data" / "activations"
    sidecar = folder / name.replace(".json", ".npz")
    meta = folder / name
    assert sidecar.is_file() and meta.is_file()
    served = len(client.get(f"/api/activations/{name}").data)
    assert sidecar.stat().st_size + meta.stat().st_size < served
    assert not any(p.name.startswith(TEMP_PREFIX) for p in folder.iterdir())


@pytest.mark.parametrize("path, body", [
    ("/api/activations/generate", {"prompt": "Hello world, this is a test. " * 10}),
    ("/api/activations/corpus", {"texts": ["short", "Hello world, this is a test. " * 10]}),
])
def test_texts_longer_than_the_context_are_refused(make_app, path, body):
    """tiny-gpt2 has 128 learned positions: a longer text is a 400, not a crash in the embedding."""
    client = make_app(model="tiny-gpt2").test_client()
    response = client.post(path, json=body)
    assert response.status_code == 400 and "context length" in response.json["details"]


def test_model_name_switches_first(make_app):
    client = make_app(model="tiny-gpt2").test_client()
    body = generate(client, model_name="tiny-llama")
    assert body["model_name"] == "tiny-llama"
    assert client.get("/api/health").json["model_name"] == "tiny-llama"
    assert generate(client, model_name="tiny-llama")["filename"] == body["filename"]


@pytest.mark.parametrize("model_name, status", [("no-such-model-xyz", 404), ("gpt2", 503), ("../../etc", 400), ("/abs/path", 400)])
def test_unloadable_model_name_fails_and_keeps_the_model(make_app, model_name, status):
    client = make_app(model="tiny-gpt2").test_client()
    generate(client)
    response = client.post("/api/activations/generate", json={"prompt": PROMPT, "model_name": model_name})
    assert response.status_code == status and set(response.json) == {"error", "details"}
    assert client.get("/api/health").json["model_name"] == "tiny-gpt2"
    assert client.get("/api/activations/files").json["count"] == 1


BAD_BODIES = [
    ("/api/activations/generate", {}),
    ("/api/activations/generate", {"prompt": ""}),
    ("/api/activations/generate", {"prompt": 12}),
    ("/api/activations/generate", {"prompt": ["a"]}),
    ("/api/activations/generate", {"prompt": "word " * 2000}),
    ("/api/activations/generate", {"prompt": "hi", "model_name": 5}),
    ("/api/activations/corpus", {}),
    ("/api/activations/corpus", {"texts": []}),
    ("/api/activations/corpus", {"texts": ["ok", ""]}),
    ("/api/activations/corpus", {"texts": "not a list"}),
    ("/api/activations/corpus", {"texts": ["ok"], "use_samples": True}),
    ("/api/activations/corpus", {"use_samples": "yes"}),
    ("/api/activations/corpus", {"use_samples": False}),
    ("/api/activations/corpus", {"texts": ["ok"], "batch_size": 0}),
    ("/api/activations/corpus", {"texts": ["ok"], "batch_size": 10**9}),
    ("/api/activations/corpus", {"texts": ["word " * 2000]}),
    ("/api/queries/neuron", {}),
    ("/api/queries/neuron", {"layer_index": 0}),
    ("/api/queries/neuron", {"layer_index": 99, "neuron_index": 0}),
    ("/api/queries/neuron", {"layer_index": 0, "neuron_index": 10**6}),
    ("/api/queries/neuron", {"layer_index": -1, "neuron_index": 0}),
    ("/api/queries/neuron", {"layer_index": 0, "neuron_index": 0, "top_k": 0}),
    ("/api/queries/neuron", {"layer_index": 0, "neuron_index": 0, "top_k": 51}),
    ("/api/queries/neuron", {"layer_index": "0", "neuron_index": 0}),
    ("/api/queries/neuron", {"layer_index": True, "neuron_index": 0}),
    ("/api/queries/cluster", {}),
    ("/api/queries/cluster", {"cluster_id": -1}),
    ("/api/queries/cluster", {"cluster_id": 0, "cluster_file": "../x.json"}),
    ("/api/clusters/generate", {}),
    ("/api/clusters/generate", {"activation_file": 3, "layer_index": 0, "n_clusters": 2}),
]


@pytest.mark.parametrize("path, body", BAD_BODIES)
def test_bad_bodies_get_4xx_json_and_change_nothing(make_app, tmp_path, path, body):
    client = make_app().test_client()
    response = client.post(path, json=body)
    assert 400 <= response.status_code < 500, response.json
    assert set(response.json) == {"error", "details"}
    for kind in ("activations", "clusters", "queries"):
        assert client.get(f"/api/{kind}/files").json["count"] == 0


@pytest.mark.parametrize("path", ["/api/activations/generate", "/api/activations/corpus", "/api/queries/neuron", "/api/queries/cluster", "/api/clusters/generate"])
def test_non_json_bodies_are_refused(client, path):
    assert client.post(path, data="prompt=hi", content_type="application/x-www-form-urlencoded").status_code == 415
    malformed = client.post(path, data="{not json", content_type="application/json")
    assert malformed.status_code == 400 and set(malformed.json) == {"error", "details"}
    assert client.post(path, json=["a list"]).status_code == 400


def test_query_with_nothing_indexed_says_what_to_index(client):
    response = client.post("/api/queries/neuron", json={"layer_index": 0, "neuron_index": 0, "top_k": 5})
    assert response.status_code == 200
    body = response.json
    assert body["top_tokens"] == [] and body["count"] == 0
    assert "/api/activations/corpus" in body["message"] and "/api/activations/generate" in body["message"]


def test_corpus_from_samples_reports_progress_and_counts(make_app):
    app = make_app()
    svc = app.extensions["neuronscope"]
    steps = []
    result = svc.activations.index_corpus(None, batch_size=5, progress=lambda f, step: steps.append((f, step)))
    samples = svc.samples.list()
    assert result["texts_received"] == len(samples) and result["texts_indexed"] == len(set(samples))
    assert result["index"]["corpus_texts"] == len(set(samples))
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[0] == 0.0 and fractions[-1] == 1.0
    batches = int(re.search(r"in (\d+) batches", steps[0][1]).group(1))  # at most 5 texts, little padding each
    assert batches >= -(-len(set(samples)) // 5)
    assert sum("indexed batch" in step for _, step in steps) == batches
    response = app.test_client().post("/api/activations/corpus", json={"use_samples": True})
    assert response.status_code == 200 and response.json["texts_indexed"] == 0
