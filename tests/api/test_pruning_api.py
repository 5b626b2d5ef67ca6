"""The /api/pruning endpoints: documented fields, numbers against references, bad inputs, exports."""

from __future__ import annotations

import json
import math
import os
import threading

import pytest
from tests.support.pruning_reference import outputs, reference_metrics, zeroed_copy

from neuronscope.analysis.forward import encode
from neuronscope.analysis.hooks import hook_count
from neuronscope.errors import ServiceBusy
from neuronscope.services import pruning as pruning_service

IMPACT = "/api/pruning/impact-analysis"
IMPORTANCE = "/api/pruning/neuron-importance"
BATCH = "/api/pruning/batch-analysis"
EXPORT = "/api/pruning/export"
TEXTS = ["Hello world", "The capital of France is Paris."]
LONG = "The quick brown fox jumps over the lazy dog. " * 3

LIMITS = {"max_input_tokens": 12, "max_texts": 2, "max_neurons_per_request": 8, "max_batch_size": 4}

BAD_REQUESTS = [
    ("GET", "/api/pruning/weight-analysis?tolerance=-1", None),
    ("GET", "/api/pruning/weight-analysis?tolerance=abc", None),
    ("GET", "/api/pruning/weight-analysis?tolerance=nan", None),
    ("GET", "/api/pruning/candidates?threshold=-0.5", None),
    ("GET", "/api/pruning/candidates?threshold=100.5", None),
    ("GET", "/api/pruning/candidates?threshold=ten", None),
    ("GET", "/api/pruning/candidates?threshold=inf", None),
    ("GET", "/api/pruning/candidates?threshold=", None),
    ("GET", "/api/pruning/candidates?method=sparsegpt", None),
    ("GET", "/api/pruning/candidates?layer_index=2", None),
    ("GET", "/api/pruning/candidates?layer_index=-1", None),
    ("GET", "/api/pruning/candidates?layer_index=1.5", None),
    ("GET", "/api/pruning/candidates?limit=0", None),
    ("GET", "/api/pruning/candidates?offset=-3", None),
    ("POST", IMPACT, {"neuron_indices": [0], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": "0", "neuron_indices": [0], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0.0, "neuron_indices": [0], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": True, "neuron_indices": [0], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 2, "neuron_indices": [0], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": -1, "neuron_indices": [0], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": "0", "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0, 0], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0, "1"], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0.5], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [128], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [-1], "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": list(range(9)), "input_text": "Hello"}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0]}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0], "input_text": ""}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0], "input_text": "   "}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0], "input_text": 5}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0], "input_text": LONG}),
    ("POST", IMPACT, {"layer_index": 0, "neuron_indices": [0], "input_text": "Hello", "ablation": "random"}),
    ("POST", IMPORTANCE, {"layer_index": 0}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": []}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": "Hello world"}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": ["Hello", ""]}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": ["Hello", 3]}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": ["a", "b", "c"]}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": ["Hello", LONG]}),
    ("POST", IMPORTANCE, {"layer_index": 2, "input_texts": ["Hello"]}),
    ("POST", IMPORTANCE, {"input_texts": ["Hello"]}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": ["Hello"], "method": "taylor"}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": ["Hello"], "ablation": "max"}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": ["Hello"], "critical_threshold": -1}),
    ("POST", IMPORTANCE, {"layer_index": 0, "input_texts": ["Hello"], "critical_threshold": "high"}),
    ("POST", BATCH, {"input_texts": ["Hello"]}),
    ("POST", BATCH, {"pruning_candidates": [], "input_texts": ["Hello"]}),
    ("POST", BATCH, {"pruning_candidates": "0:1", "input_texts": ["Hello"]}),
    ("POST", BATCH, {"pruning_candidates": [1], "input_texts": ["Hello"]}),
    ("POST", BATCH, {"pruning_candidates": [{"layer_index": 0}], "input_texts": ["Hello"]}),
    ("POST", BATCH, {"pruning_candidates": [{"layer_index": 0, "neuron_index": "1"}], "input_texts": ["Hello"]}),
    (
        "POST", BATCH,
        {"pruning_candidates": [{"layer_index": 0, "neuron_index": 1}, {"layer_index": 0, "neuron_index": 1}],
         "input_texts": ["Hello"]},
    ),
    ("POST", BATCH, {"pruning_candidates": [{"layer_index": 2, "neuron_index": 1}], "input_texts": ["Hello"]}),
    ("POST", BATCH, {"pruning_candidates": [{"layer_index": 0, "neuron_index": 128}], "input_texts": ["Hello"]}),
    ("POST", BATCH, {"pruning_candidates": [{"layer_index": 0, "neuron_index": 1}], "input_texts": []}),
    ("POST", BATCH, {"pruning_candidates": [{"layer_index": 0, "neuron_index": 1}]}),
    ("POST", BATCH, {"pruning_candidates": [{"layer_index": 0, "neuron_index": 1}], "input_texts": [LONG]}),
    *[
        ("POST", BATCH, {"pruning_candidates": [{"layer_index": 0, "neuron_index": 1}], "input_texts": ["Hi"], "batch_size": size})
        for size in (0, -1, "3", 2.5, 5)
    ],
    ("POST", EXPORT, {}),
    ("POST", EXPORT, {"type": "activations"}),
    ("POST", EXPORT, {"type": 3}),
    ("POST", EXPORT, {"type": ""}),
]


def _files(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture
def limited(make_app):
    app = make_app("tiny-gpt2", **LIMITS)
    app.extensions["neuronscope"].manager.ensure_loaded()
    return app


@pytest.mark.parametrize("method, path, body", BAD_REQUESTS, ids=[f"{m} {p} {b}"[:90] for m, p, b in BAD_REQUESTS])
def test_bad_input_is_a_4xx_json_error_and_changes_nothing(limited, method, path, body):
    services = limited.extensions["neuronscope"]
    before = _files(services.settings.data_dir)
    response = limited.test_client().open(path, method=method, json=body)
    assert response.status_code == 400, response.get_json()
    assert set(response.get_json()) == {"error", "details"} and response.get_json()["details"]
    assert hook_count(services.manager.ensure_loaded().model) == 0
    assert _files(services.settings.data_dir) == before
    assert not services.pruning._history


@pytest.mark.parametrize("path", [IMPACT, IMPORTANCE, BATCH, EXPORT])
def test_non_json_bodies_are_refused(limited, path):
    client = limited.test_client()
    assert client.post(path, data="layer_index=0", content_type="application/x-www-form-urlencoded").status_code == 415
    for raw in ("{", "[1, 2]", "null"):
        response = client.post(path, data=raw, content_type="application/json")
        assert response.status_code == 400 and set(response.get_json()) == {"error", "details"}


def test_impact_analysis_fields_and_numbers(make_app, model_name):
    app = make_app(model_name)
    text, layer, neurons = "Hello world, this is a test for pruning analysis.", 1, [0, 1, 2]
    body = app.test_client().post(IMPACT, json={"layer_index": layer, "neuron_indices": neurons, "input_text": text})
    assert body.status_code == 200
    result = body.get_json()
    for key in ("impact_score", "mean_change", "max_change", "affected_neurons", "safe_to_prune", "kl_divergence", "loss_delta"):
        assert key in result
    assert result["affected_neurons"] == neurons and result["ablation"] == "zero"
    lm = app.extensions["neuronscope"].manager.ensure_loaded()
    ids = [encode(lm.tokenizer, text)]
    expected = reference_metrics(outputs(lm.model, ids), outputs(zeroed_copy(lm.model, lm.adapter, {layer: neurons}), ids), ids)
    for key in ("impact_score", "mean_change", "max_change", "kl_divergence", "loss_delta"):
        assert result[key] == pytest.approx(expected[key], abs=1e-5, rel=1e-5), key
    assert result["safe_to_prune"] == expected["safe_to_prune"]
    assert result["tokens"] == ids[0].shape[1]


def test_neuron_importance_fields(client):
    result = client.post(IMPORTANCE, json={"layer_index": 1, "input_texts": TEXTS}).get_json()
    scores = result["importance_scores"]
    assert result["total_neurons"] == len(scores) == 128
    assert [s["neuron_index"] for s in scores] == list(range(128))
    assert result["critical_neurons"] == math.ceil(128 / 4) == sum(s["is_critical"] for s in scores)
    cutoff = min(s["impact_score"] for s in scores if s["is_critical"])
    assert all(s["impact_score"] <= cutoff for s in scores if not s["is_critical"])
    for s in scores:
        assert s["layer_index"] == 1 and s["activation_magnitude"] >= 0 and s["activation_variance"] >= 0
        assert s["max_change"] >= s["mean_change"] >= 0
    with_threshold = client.post(IMPORTANCE, json={"layer_index": 1, "input_texts": TEXTS, "critical_threshold": 0.05}).get_json()
    assert [s["is_critical"] for s in with_threshold["importance_scores"]] == [s["impact_score"] >= 0.05 for s in scores]
    fast = client.post(IMPORTANCE, json={"layer_index": 1, "input_texts": TEXTS, "method": "attribution"}).get_json()
    assert fast["method"] == "attribution" and len(fast["importance_scores"]) == 128
    assert [s["activation_magnitude"] for s in fast["importance_scores"]] == pytest.approx([s["activation_magnitude"] for s in scores])


def test_batch_analysis_against_references(make_app, model_name):
    app = make_app(model_name)
    lm = app.extensions["neuronscope"].manager.ensure_loaded()
    candidates = [(0, 3), (1, 5), (0, 9), (1, 0), (1, 30)]
    body = {
        "pruning_candidates": [{"layer_index": l, "neuron_index": n} for l, n in candidates],
        "input_texts": TEXTS,
        "batch_size": 3,
    }
    result = app.test_client().post(BATCH, json=body).get_json()
    ids = [encode(lm.tokenizer, t) for t in TEXTS]
    clean = outputs(lm.model, ids)
    singles = []
    for (layer, neuron), got in zip(candidates, result["individual_impacts"]):
        expected = reference_metrics(clean, outputs(zeroed_copy(lm.model, lm.adapter, {layer: [neuron]}), ids), ids)
        assert (got["layer_index"], got["neuron_index"]) == (layer, neuron)
        assert got["impact_score"] == pytest.approx(expected["impact_score"], abs=1e-5)
        assert got["max_change"] == pytest.approx(expected["max_change"], abs=1e-5)
        singles.append(expected["impact_score"])
    order = sorted(range(len(candidates)), key=lambda i: result["individual_impacts"][i]["impact_score"])
    curve = result["cumulative_curve"]
    assert [c["k"] for c in curve] == [1, 2, 3]
    for k, point in enumerate(curve, start=1):
        together: dict[int, list[int]] = {}
        for i in order[:k]:
            together.setdefault(candidates[i][0], []).append(candidates[i][1])
        expected = reference_metrics(clean, outputs(zeroed_copy(lm.model, lm.adapter, together), ids), ids)
        assert point["impact_score"] == pytest.approx(expected["impact_score"], abs=1e-5)
        assert point["kl_divergence"] == pytest.approx(expected["kl_divergence"], abs=1e-5)
    assert result["cumulative_impact"]["impact_score"] == curve[-1]["impact_score"]
    assert result["cumulative_impact"]["neurons"] == [
        {"layer_index": candidates[i][0], "neuron_index": candidates[i][1]} for i in order[:3]
    ]
    recommendations = result["recommendations"]
    assert recommendations["safe_to_prune"] == sum(s < 0.1 for s in singles)
    assert recommendations["risky_to_prune"] == len(candidates) - recommendations["safe_to_prune"]
    fitting = [c["k"] for c in curve if c["impact_score"] < 0.1]
    assert recommendations["suggested_batch_size"] == max(fitting, default=0)
    assert recommendations["high_impact_neurons"] == [i for i in result["individual_impacts"] if i["impact_score"] >= 0.3]


def test_exports_are_written_atomically_under_the_data_dir(app):
    client = app.test_client()
    services = app.extensions["neuronscope"]
    folder = services.settings.data_dir / "pruning"
    empty = client.post(EXPORT, json={"type": "impact"}).get_json()
    assert empty["count"] == 0
    client.post(IMPACT, json={"layer_index": 0, "neuron_indices": [1], "input_text": "Hello world"})
    client.post(IMPORTANCE, json={"layer_index": 1, "input_texts": ["Hello world"]})
    client.post(BATCH, json={"pruning_candidates": [{"layer_index": 0, "neuron_index": 2}], "input_texts": ["Hi"]})
    exported = client.post(EXPORT, json={"type": "impact"}).get_json()
    assert exported["file_path"] == "pruning/impact_analysis.json"
    saved = json.loads((folder / "impact_analysis.json").read_text())
    assert [a["analysis"] for a in saved["analyses"]] == ["impact-analysis", "neuron-importance", "batch-analysis"]
    assert saved["analyses"][0]["request"]["neuron_indices"] == [1]
    weight = client.post(EXPORT, json={"type": "weight"}).get_json()
    assert weight["file_path"] == "pruning/weight_analysis.json"
    saved = json.loads((folder / "weight_analysis.json").read_text())
    live = client.get("/api/pruning/weight-analysis").get_json()
    assert saved["weight_analysis"]["total_parameters"] == live["total_parameters"]
    assert saved["candidates"] == client.get("/api/pruning/candidates").get_json()
    assert sorted(os.listdir(folder)) == ["impact_analysis.json", "weight_analysis.json"]


def test_weight_analysis_is_cached_per_model(app, monkeypatch):
    calls = []
    original = pruning_service.analyze_weights
    monkeypatch.setattr(pruning_service, "analyze_weights", lambda *a, **k: calls.append(a) or original(*a, **k))
    client = app.test_client()
    first = client.get("/api/pruning/weight-analysis").get_json()
    again = client.get("/api/pruning/weight-analysis").get_json()
    assert again.pop("cached") is True and again == first
    assert len(calls) == 1
    client.get("/api/pruning/weight-analysis?tolerance=0.01")
    assert len(calls) == 2
    assert client.post("/api/models/switch", json={"model_name": "tiny-llama"}).status_code == 200
    other = client.get("/api/pruning/weight-analysis").get_json()
    assert len(calls) == 3 and other["model_name"] == "tiny-llama" and other["total_parameters"] != first["total_parameters"]


def test_analyses_hold_the_model_for_their_whole_run(make_app):
    services = make_app(queue_timeout=0.01).extensions["neuronscope"]
    seen = []

    def probe(fraction: float, step: str) -> None:
        outcome = {}

        def try_use():
            try:
                with services.manager.use():
                    outcome["busy"] = False
            except ServiceBusy:
                outcome["busy"] = True

        other = threading.Thread(target=try_use)
        other.start()
        other.join()
        seen.append(outcome["busy"])

    services.pruning.neuron_importance(0, ["Hello world"], progress=probe)
    services.pruning.weight_analysis(tolerance=0.5, progress=probe)
    assert seen and all(seen)


def test_failed_analysis_leaves_no_hook(app):
    services = app.extensions["neuronscope"]

    def cancel(fraction: float, step: str) -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        services.pruning.batch_analysis([(0, 1), (1, 2)], ["Hello world"], progress=cancel)
    with pytest.raises(RuntimeError):
        services.pruning.neuron_importance(1, ["Hello world"], method="attribution", progress=cancel)
    with pytest.raises(RuntimeError):
        services.pruning.candidates(method="wanda", progress=cancel)
    assert hook_count(services.manager.ensure_loaded().model) == 0
    assert not services.pruning._history


def test_batch_analysis_mean_ablation_equals_impact_analysis(client):
    """Each individual mean-ablation impact equals impact-analysis of that neuron on the same single text."""
    candidates = [{"layer_index": 0, "neuron_index": 4}, {"layer_index": 1, "neuron_index": 6}]
    text = "The capital of France is Paris."
    batch = client.post(BATCH, json={"pruning_candidates": candidates, "input_texts": [text], "ablation": "mean"}).get_json()
    for candidate, got in zip(candidates, batch["individual_impacts"]):
        alone = client.post(IMPACT, json={
            "layer_index": candidate["layer_index"], "neuron_indices": [candidate["neuron_index"]],
            "input_text": text, "ablation": "mean",
        }).get_json()
        for key in ("impact_score", "mean_change", "max_change", "kl_divergence", "loss_delta"):
            assert got[key] == pytest.approx(alone[key], abs=1e-6), key
