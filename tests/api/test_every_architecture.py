"""Every endpoint of the contract, once, on a tiny model of every supported architecture family:
a user's tour of the API (capture, cluster, query, index, analyse, plan, sweep, apply) answers
with the documented fields and never a server error, whatever the architecture."""

from __future__ import annotations

import io

import pytest

from tests.support.tiny_models import ALL_TINY, CORPUS

TEXTS = CORPUS[:24]
"""The tiny tokenizer's own six sentences, four times."""


def ok(response, status: int = 200) -> dict:
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True)[:400])
    return response.get_json()


@pytest.mark.parametrize("model", ALL_TINY)
def test_a_tour_of_every_endpoint(make_app, model):
    client = make_app(model).test_client()
    info = ok(client.get(f"/api/models/{model}"))
    layers = info["layers"]

    weights = ok(client.get("/api/pruning/weight-analysis"))
    assert weights["total_parameters"] == info["parameters"] > 0 and weights["layer_stats"]
    assert ok(client.get("/api/pruning/candidates?threshold=10"))["candidates"]
    importance = ok(client.post("/api/pruning/neuron-importance", json={"layer_index": layers - 1, "input_texts": TEXTS[:2]}))
    d_mlp = importance["total_neurons"]
    assert len(importance["importance_scores"]) == d_mlp and 0 < importance["critical_neurons"] < d_mlp
    impact = ok(client.post("/api/pruning/impact-analysis", json={"layer_index": 0, "neuron_indices": [0, 1], "input_text": TEXTS[0]}))
    assert impact["affected_neurons"] == [0, 1] and impact["max_change"] > 0
    batch = ok(client.post("/api/pruning/batch-analysis", json={
        "pruning_candidates": [{"layer_index": 0, "neuron_index": 3}, {"layer_index": 1, "neuron_index": 5}],
        "input_texts": TEXTS[:2]}))
    assert len(batch["individual_impacts"]) == 2 and batch["cumulative_impact"]["max_change"] > 0

    generated = ok(client.post("/api/activations/generate", json={"prompt": TEXTS[1]}), 201)
    stored = ok(client.get(f"/api/activations/{generated['filename']}?layer=0&top_k=4"))
    assert stored["tokens"] and len(stored["layers"]) == 1
    cluster = ok(client.post("/api/clusters/generate", json={"activation_file": generated["filename"], "layer_index": 0, "n_clusters": 3}), 201)
    assert sum(cluster["cluster_sizes"]) == d_mlp and len(cluster["assignments"]) == d_mlp
    ok(client.post("/api/activations/corpus", json={"texts": TEXTS, "batch_size": 4}))
    neuron = ok(client.post("/api/queries/neuron", json={"layer_index": 0, "neuron_index": 1, "top_k": 3}))
    assert neuron["count"] == len(neuron["top_tokens"]) == 3
    assert ok(client.post("/api/queries/cluster", json={"cluster_id": 0, "top_k": 3}))["top_tokens"]

    upload = {"file": (io.BytesIO("\n\n".join(TEXTS).encode()), "tour.txt")}
    ok(client.post("/api/corpora", data=upload, content_type="multipart/form-data"), 201)
    ok(client.post("/api/corpora/tour/index", json={}))
    page = ok(client.get("/api/neurons/1/2?corpus=tour"))
    assert page["top_examples"] and len(page["output_tokens"]["promoted"]) > 0

    calibration, evaluation = TEXTS[:6], TEXTS[6:12]
    evaluation_texts = [text + f" ({i})" for i, text in enumerate(evaluation)]
    plan = ok(client.post("/api/pruning/plan", json={
        "sparsity": 0.25, "method": "wanda", "texts": calibration, "estimate": True, "allow_overlap": True}))
    assert plan["estimate"]["perplexity_after"] > 0
    sweep = ok(client.post("/api/pruning/sweep", json={
        "methods": ["activation"], "sparsities": [0.25], "compensations": ["none", "reconstruct"],
        "texts": calibration, "allow_overlap": True}))
    assert len(sweep["rows"]) == 2
    applied = ok(client.post("/api/pruning/apply", json={
        "output_name": f"{model}-pruned", "plan": plan, "compensation": "reconstruct",
        "texts": evaluation_texts, "allow_overlap": True}), 201)
    assert applied["perplexity_after"] > 0
    pruned = ok(client.get(f"/api/models/{model}-pruned"))
    assert pruned["parameters"] == applied["parameters"]["after"], (applied["parameters"], plan["parameters"])
    removed = {entry["layer_index"]: set(entry["neuron_indices"]) for entry in plan["neurons"]}
    for kept in pruned["pruning"]["kept"]:
        assert kept["original_indices"] == [n for n in range(d_mlp) if n not in removed[kept["layer_index"]]]
    health = ok(client.get("/api/health"))
    assert health["model_name"] == model and health["model_ready"] is True
