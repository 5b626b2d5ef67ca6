"""?format=csv on the neuron page, candidates, importance results and cluster files."""

from __future__ import annotations

import csv
import io

import pytest


def rows(response) -> list[dict]:
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="')
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_candidates_and_importance_as_csv(client):
    body = client.get("/api/pruning/candidates?threshold=20").get_json()
    table = rows(client.get("/api/pruning/candidates?threshold=20&format=csv"))
    assert [(int(r["layer_index"]), int(r["neuron_index"])) for r in table] == [
        (c["layer_index"], c["neuron_index"]) for c in body["candidates"]
    ]
    request = {"layer_index": 0, "input_texts": ["The fox jumps."]}
    scores = client.post("/api/pruning/neuron-importance", json=request).get_json()["importance_scores"]
    table = rows(client.post("/api/pruning/neuron-importance?format=csv", json=request))
    assert len(table) == len(scores) and float(table[3]["impact_score"]) == pytest.approx(scores[3]["impact_score"])


def test_cluster_assignments_as_csv(client):
    name = client.post("/api/activations/generate", json={"prompt": "The quick brown fox jumps over the dog."}).get_json()["filename"]
    cluster_file = client.post("/api/clusters/generate", json={"activation_file": name, "layer_index": 1, "n_clusters": 3}).get_json()["filename"]
    body = client.get(f"/api/clusters/{cluster_file}").get_json()
    table = rows(client.get(f"/api/clusters/{cluster_file}?format=csv"))
    assert [int(r["neuron_index"]) for r in table] == list(range(body["n_neurons"]))
    for cluster in body["clusters"]:
        assert {int(r["neuron_index"]) for r in table if int(r["cluster_id"]) == cluster["cluster_id"]} == set(cluster["neuron_indices"])


def test_neuron_examples_as_csv_and_bad_format(client):
    payload = "The fox jumps.\n\n=SUM(A1) is not a formula here.\n\nRome and Paris.".encode()
    client.post("/api/corpora", data={"file": (io.BytesIO(payload), "few.txt")}, content_type="multipart/form-data")
    client.post("/api/corpora/few/index", json={})
    page = client.get("/api/neurons/0/2?corpus=few").get_json()
    table = rows(client.get("/api/neurons/0/2?corpus=few&format=csv"))
    assert [r["tail"] for r in table] == ["top"] * len(page["top_examples"]) + ["bottom"] * len(page["bottom_examples"])
    assert [float(r["max_activation"]) for r in table[: len(page["top_examples"])]] == [e["max_activation"] for e in page["top_examples"]]
    assert not any(r["window"].startswith("=") for r in table)
    assert client.get("/api/neurons/0/2?corpus=few&format=xml").status_code == 400
