"""KMeans over neurons against scikit-learn run directly, the cluster files, and cluster queries."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

from neuronscope.analysis.activations import neuron_activations
from neuronscope.analysis.cluster_ranking import NeuronList, rank_cluster_positions
from neuronscope.analysis.clustering import cluster_neurons
from neuronscope.analysis.tokens import indexable_positions

from tests.support.activation_helpers import projection_hooks

PROMPT = "The capital of France is Paris, and the quick brown fox jumps over the lazy dog."


def random_activations(seed: int = 0) -> np.ndarray:
    """``[tokens, neurons]`` with a few planted groups of neurons that fire together."""
    rng = np.random.default_rng(seed)
    patterns = rng.normal(size=(4, 12)) * 3
    groups = rng.integers(0, 4, size=60)
    return (patterns[groups] + rng.normal(size=(60, 12)) * 0.3).T.astype(np.float32)


def test_clustering_is_deterministic_and_equals_scikit_learn():
    acts = random_activations()
    first, second = cluster_neurons(acts, 4), cluster_neurons(acts, 4)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert first.inertia == second.inertia
    vectors = StandardScaler().fit_transform(acts.T)
    direct = KMeans(n_clusters=4, random_state=0, n_init=10).fit(vectors)
    np.testing.assert_array_equal(first.labels, direct.labels_)
    assert first.inertia == pytest.approx(direct.inertia_)
    assert first.silhouette == pytest.approx(silhouette_score(vectors, direct.labels_))
    for cluster in range(4):
        np.testing.assert_allclose(first.centroids[cluster], acts[:, direct.labels_ == cluster].mean(axis=1), rtol=1e-6)


def test_standardisation_is_per_token():
    acts = random_activations(1)
    acts[0] *= 1000.0  # one token with huge activations everywhere
    scaled = cluster_neurons(acts, 4)
    acts[0] /= 1000.0
    np.testing.assert_array_equal(scaled.labels, cluster_neurons(acts, 4).labels)


def test_silhouette_is_none_when_undefined():
    acts = random_activations()[:, :5]
    assert cluster_neurons(acts, 5).silhouette is None


@pytest.fixture
def activation_app(make_app, model_name):
    app = make_app(model=model_name)
    client = app.test_client()
    response = client.post("/api/activations/generate", json={"prompt": PROMPT})
    assert response.status_code == 201
    return app, client, response.json["filename"]


def test_cluster_file_matches_direct_clustering(activation_app):
    app, client, filename = activation_app
    response = client.post("/api/clusters/generate", json={"activation_file": filename, "layer_index": 1, "n_clusters": 5})
    assert response.status_code == 201, response.json
    body = response.json
    acts = app.extensions["neuronscope"].activations.store.layers(filename, [1])[1]
    direct = KMeans(n_clusters=5, random_state=0, n_init=10).fit(StandardScaler().fit_transform(acts.T))
    assert body["assignments"] == direct.labels_.tolist()
    assert body["cluster_sizes"] == np.bincount(direct.labels_, minlength=5).tolist()
    assert sum(body["cluster_sizes"]) == body["n_neurons"] == acts.shape[1]
    assert body["inertia"] == pytest.approx(direct.inertia_)
    assert len(body["centroids"]) == 5 and len(body["centroids"][0]) == body["n_tokens"] == acts.shape[0]
    for cluster in body["clusters"]:
        assert {n["neuron_index"] for n in cluster["top_neurons"]} <= set(cluster["neuron_indices"])
    assert -1 <= body["silhouette_score"] <= 1
    stored = client.get(f"/api/clusters/{body['filename']}").json
    assert stored["assignments"] == body["assignments"]
    assert client.get("/api/clusters/files").json == {"files": [body["filename"]], "count": 1}


@pytest.mark.parametrize(
    "change, status",
    [
        ({"n_clusters": 1}, 400),
        ({"n_clusters": 100_000}, 400),
        ({"n_clusters": "3"}, 400),
        ({"layer_index": 99}, 400),
        ({"layer_index": -1}, 400),
        ({"activation_file": "missing-000000000000.json"}, 404),
        ({"activation_file": "../secret.json"}, 400),
        ({"activation_file": None}, 400),
    ],
)
def test_bad_cluster_requests(activation_app, change, status):
    _, client, filename = activation_app
    body = {"activation_file": filename, "layer_index": 0, "n_clusters": 3, **change}
    response = client.post("/api/clusters/generate", json=body)
    assert response.status_code == status
    assert set(response.json) == {"error", "details"}


def test_more_clusters_than_neurons_is_refused(make_app):
    client = make_app(max_clusters=10_000).test_client()
    filename = client.post("/api/activations/generate", json={"prompt": PROMPT}).json["filename"]
    neurons = client.get(f"/api/activations/{filename}?layer=0").json["neurons_per_layer"][0]
    ok = client.post("/api/clusters/generate", json={"activation_file": filename, "layer_index": 0, "n_clusters": neurons})
    assert ok.status_code == 201 and ok.json["silhouette_score"] is None
    too_many = client.post("/api/clusters/generate", json={"activation_file": filename, "layer_index": 0, "n_clusters": neurons + 1})
    assert too_many.status_code == 400 and str(neurons) in too_many.json["details"]


def brute_force_ranking(scores: dict[int, np.ndarray], k: int) -> list[tuple[float, int, int]]:
    rows = [(float(v), s, p) for s, values in scores.items() for p, v in enumerate(values) if not np.isnan(v)]
    return sorted(rows, key=lambda r: (-r[0], r[1], r[2]))[:k]


def planted_lists(acts: np.ndarray, depth: int) -> list[NeuronList]:
    """Each member's top-``depth`` list over ``acts`` ``[sources, length, members]``."""
    sources, length, members = acts.shape
    lists = []
    for n in range(members):
        flat = acts[:, :, n].ravel()
        best = np.argsort(-flat, kind="stable")[:depth]
        lists.append(NeuronList(flat[best], best // length, best % length, full=True))
    return lists


def rank_with_record(acts: np.ndarray, depth: int, k: int):
    means = {s: acts[s].mean(axis=1) for s in range(acts.shape[0])}
    scored: list[int] = []

    def score(ids):
        scored.extend(ids)
        return {s: means[s] for s in ids}

    ranking = rank_cluster_positions(planted_lists(acts, depth), score, k, indexed_sources=acts.shape[0], chunk=4)
    return ranking, means, scored


@pytest.mark.parametrize("seed", range(6))
def test_correlated_cluster_ranking_is_exact_early(seed):
    """Neurons that fire together: the bounds stop the rescoring early with the exact top k."""
    rng = np.random.default_rng(seed)
    shared = rng.gamma(1.0, size=(40, 12, 1))
    acts = shared * rng.uniform(0.5, 2, size=5) + rng.normal(size=(40, 12, 5)) * 0.2
    ranking, means, scored = rank_with_record(acts, depth=8, k=5)
    assert ranking.exact and ranking.sources_rescored == len(scored) < 40
    expected = brute_force_ranking(means, 5)
    np.testing.assert_allclose([r.score for r in ranking.top], [e[0] for e in expected])
    assert [(r.source, r.position) for r in ranking.top] == [(e[1], e[2]) for e in expected]


@pytest.mark.parametrize("seed", range(4))
def test_uncorrelated_cluster_ranking_is_the_top_of_what_it_scored(seed):
    """Independent neurons: loose bounds; the answer is the exact top k of the rescored sources."""
    rng = np.random.default_rng(seed)
    acts = rng.gamma(1.0, size=(40, 12, 5))
    ranking, means, scored = rank_with_record(acts, depth=8, k=5)
    expected = brute_force_ranking({s: means[s] for s in scored}, 5)
    assert [(r.source, r.position) for r in ranking.top] == [(e[1], e[2]) for e in expected]
    truth = brute_force_ranking(means, 5)
    assert ranking.exact == (ranking.top[-1].score >= ranking.outside_bound) or len(scored) == 40
    if ranking.exact:
        assert [(r.source, r.position) for r in ranking.top] == [(e[1], e[2]) for e in truth]


def test_cluster_ranking_is_exact_once_every_source_is_scored():
    rng = np.random.default_rng(3)
    acts = rng.normal(size=(6, 5, 3))
    lists = [NeuronList(np.sort(acts[:, :, n].ravel())[::-1][:2], np.zeros(2, int), np.arange(2), full=True) for n in range(3)]
    means = {s: acts[s].mean(axis=1) for s in range(6)}
    ranking = rank_cluster_positions(lists, lambda ids: {s: means[s] for s in ids}, 3, indexed_sources=1)
    assert ranking.sources_rescored == 1 and ranking.exact


@pytest.mark.parametrize("depth", [5, 50])
def test_cluster_query_equals_brute_force(make_app, model_name, depth):
    """The cluster query over the index against every indexed text's recomputed cluster mean.

    Each reported score is the true mean at its position; when the answer says ``exact`` (always
    with depth 50: lists hold every position of this small corpus) it is the true top k.
    """
    app = make_app(model=model_name, index_depth=depth)
    client = app.test_client()
    texts = [PROMPT, "Hello world, this is a test.", "One two three four five.", "Machine learning is fascinating."]
    filename = client.post("/api/activations/generate", json={"prompt": texts[0]}).json["filename"]
    assert client.post("/api/activations/corpus", json={"texts": texts[1:]}).status_code == 200
    cluster = client.post("/api/clusters/generate", json={"activation_file": filename, "layer_index": 1, "n_clusters": 3}).json
    svc = app.extensions["neuronscope"]
    lm = svc.manager.ensure_loaded()
    text_of = {tuple(lm.tokenizer(t)["input_ids"]): i for i, t in enumerate(texts)}
    for cluster_id in range(3):
        response = client.post("/api/queries/cluster", json={"cluster_id": cluster_id, "top_k": 4})
        assert response.status_code == 200, response.json
        body = response.json
        assert body["query"]["cluster_file"] == cluster["filename"]
        members = cluster["clusters"][cluster_id]["neuron_indices"]
        scores = {}
        for i, text in enumerate(texts):
            ids = lm.tokenizer(text)["input_ids"]
            mean = neuron_activations(lm.model, lm.adapter, torch.tensor([ids]))[1][:, members].mean(dim=1).double().numpy()
            mean[~np.asarray(indexable_positions(lm.tokenizer, ids))] = np.nan
            scores[i] = mean
        for entry in body["top_tokens"]:
            assert f"[[{entry['token']}]]" in entry["context"]
            if entry["source_kind"] == "file":
                source = 0
            else:
                stored = svc.queries.index.sources([int(entry["source"].split(":")[1])])
                source = text_of[tuple(next(iter(stored.values())).token_ids)]
            assert entry["activation"] == pytest.approx(scores[source][entry["position"]], abs=2e-5)
        assert body["exact"] or depth == 5
        if body["exact"]:
            expected = brute_force_ranking(scores, 4)
            np.testing.assert_allclose([t["activation"] for t in body["top_tokens"]], [e[0] for e in expected], atol=2e-5)
    assert projection_hooks(lm.adapter) == 0


def test_cluster_query_errors(make_app):
    app = make_app()
    client = app.test_client()
    missing = client.post("/api/queries/cluster", json={"cluster_id": 0})
    assert missing.status_code == 404 and "clusters/generate" in missing.json["details"]
    filename = client.post("/api/activations/generate", json={"prompt": PROMPT}).json["filename"]
    cluster = client.post("/api/clusters/generate", json={"activation_file": filename, "layer_index": 0, "n_clusters": 3}).json
    assert client.post("/api/queries/cluster", json={"cluster_id": 3}).status_code == 400
    assert client.post("/api/queries/cluster", json={"cluster_id": 0, "cluster_file": "nope.json"}).status_code == 404
    assert client.post("/api/queries/cluster", json={"cluster_id": 0, "cluster_file": filename}).status_code == 404
    assert client.post("/api/queries/cluster", json={"cluster_id": 0, "top_k": 51}).status_code == 400
    switched = client.post("/api/models/switch", json={"model_name": "tiny-llama"})
    assert switched.status_code == 200
    conflict = client.post("/api/queries/cluster", json={"cluster_id": 0, "cluster_file": cluster["filename"]})
    assert conflict.status_code == 409 and "tiny-gpt2" in conflict.json["details"]
