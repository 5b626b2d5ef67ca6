"""Activations, the corpus index and a neuron query on the embedded SmolLM2 (slow: loads the model)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from tests.support.settings import make_settings

from neuronscope import create_app
from neuronscope.analysis.forward import encode

SHARED_CACHE = Path(os.environ.get("NEURONSCOPE_TEST_MODEL_CACHE", Path(__file__).parents[2] / "data" / "model_cache"))


@pytest.mark.slow
def test_embedded_model_activations_and_queries(tmp_path, models_dir):
    data = tmp_path / "data"
    data.mkdir()
    SHARED_CACHE.mkdir(parents=True, exist_ok=True)
    (data / "model_cache").symlink_to(SHARED_CACHE, target_is_directory=True)  # reuse the converted model
    app = create_app(make_settings(data, models_dir, model="smollm2-135m-instruct"))
    client = app.test_client()
    prompt = "The capital of France is Paris. Naïve café!"
    body = client.post("/api/activations/generate", json={"prompt": prompt}).json
    assert body["n_layers"] == 30 and body["neurons_per_layer"] == [1536] * 30
    assert "".join(body["tokens"]) == prompt and not any("Ġ" in t for t in body["tokens"])

    lm = app.extensions["neuronscope"].manager.ensure_loaded()
    mlp = lm.model.model.layers[7].mlp
    seen = []
    handle = mlp.register_forward_hook(lambda _m, args, _out: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            lm.model(encode(lm.tokenizer, prompt))
    finally:
        handle.remove()
    with torch.no_grad():
        expected = (mlp.act_fn(mlp.gate_proj(seen[0][0])) * mlp.up_proj(seen[0][0])).numpy()  # [seq, 1536]
    served = client.get(f"/api/activations/{body['filename']}?layer=7").json["layers"][0]["neurons"]
    np.testing.assert_allclose(np.array([n["activations"] for n in served]).T, expected, atol=1e-4, rtol=1e-4)

    indexed = client.post("/api/activations/corpus", json={"use_samples": True, "batch_size": 8}).json
    assert indexed["texts_indexed"] > 10
    top_neuron = body["summary"][7]["top_neurons"][0]["neuron_index"]
    query = client.post("/api/queries/neuron", json={"layer_index": 7, "neuron_index": top_neuron, "top_k": 5}).json
    assert query["count"] == 5
    values = [t["activation"] for t in query["top_tokens"]]
    assert values == sorted(values, reverse=True)
    assert all(f"[[{t['token']}]]" in t["context"] for t in query["top_tokens"])
