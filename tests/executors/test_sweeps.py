"""Whole-model sweeps on the local executor: layer_indices, chunking by neurons and by texts."""

from __future__ import annotations

import pytest

from neuronscope import create_app
from neuronscope.analysis.importance import critical_mask, neuron_importance
from neuronscope.services import pruning as pruning_service
from neuronscope.services.validation import encode_texts

from tests.support.settings import make_settings
from tests.support.sweep_support import TEXTS, assert_same_index, assert_same_scores, index_contents


def importance(client, **body):
    response = client.post("/api/pruning/neuron-importance", json={"input_texts": TEXTS[:3], **body})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_chunked_sweep_equals_whole_layer_sweeps(make_app, model_name, ablation):
    """layer_indices in chunks of 5 neurons == each layer swept whole by the analysis function."""
    app = make_app(model_name, chunk_neurons=5)
    result = importance(app.test_client(), layer_indices=[1, 0], ablation=ablation)
    with app.extensions["neuronscope"].manager.use() as lm:
        ids = encode_texts(lm, TEXTS[:3], 512)
        expected, critical = [], 0
        for layer in (1, 0):
            whole = neuron_importance(lm.adapter, ids, layer, ablation=ablation)
            flags = critical_mask(whole.impact_score)
            critical += int(flags.sum())
            expected += [
                {"layer_index": layer, "neuron_index": n, "activation_magnitude": float(whole.activation_magnitude[n]),
                 "activation_variance": float(whole.activation_variance[n]), "impact_score": float(whole.impact_score[n]),
                 "mean_change": float(whole.mean_change[n]), "max_change": float(whole.max_change[n]), "is_critical": bool(flags[n])}
                for n in range(lm.adapter.d_mlp(layer))
            ]
        sizes = [lm.adapter.d_mlp(layer) for layer in (1, 0)]
    assert_same_scores(result["importance_scores"], expected)
    assert [row["is_critical"] for row in result["importance_scores"]] == [row["is_critical"] for row in expected]
    assert result["layer_indices"] == [1, 0] and "layer_index" not in result
    assert result["total_neurons"] == sum(sizes) and result["critical_neurons"] == critical
    assert [layer["total_neurons"] for layer in result["layers"]] == sizes
    assert result["executor"] == {
        "executor": "local", "workers": 1, "chunks": sum(-(-size // 5) for size in sizes),
        "chunks_done": sum(-(-size // 5) for size in sizes), "retried_chunks": 0, "cancelled_tasks": 0,
    }


def test_all_layers_equals_the_list_and_single_layers(make_app):
    client = make_app("tiny-llama", chunk_neurons=7).test_client()
    every = importance(client, layer_indices="all")
    listed = importance(client, layer_indices=[0, 1])
    singles = [importance(client, layer_index=layer) for layer in (0, 1)]
    assert every["layer_indices"] == [0, 1]
    assert every["importance_scores"] == listed["importance_scores"]
    assert every["importance_scores"] == singles[0]["importance_scores"] + singles[1]["importance_scores"]
    assert singles[1]["layer_index"] == 1 and "layer_indices" not in singles[1]


def test_attribution_over_several_layers_runs_one_chunk_per_layer(make_app):
    client = make_app("tiny-gpt2", chunk_neurons=5).test_client()
    several = importance(client, layer_indices=[0, 1], method="attribution")
    singles = [importance(client, layer_index=layer, method="attribution") for layer in (0, 1)]
    assert several["executor"]["chunks"] == 2
    assert several["importance_scores"] == singles[0]["importance_scores"] + singles[1]["importance_scores"]


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "exactly one"),
        ({"layer_index": 0, "layer_indices": [1]}, "exactly one"),
        ({"layer_indices": []}, "non-empty"),
        ({"layer_indices": "some"}, "all"),
        ({"layer_indices": [0, 0]}, "repeat"),
        ({"layer_indices": [0, 2]}, "layer"),
        ({"layer_indices": [-1]}, "layer"),
        ({"layer_indices": [0.5]}, "integer"),
        ({"layer_indices": {"0": 1}}, "list"),
    ],
)
def test_bad_layer_selections_are_refused(client, body, message):
    response = client.post("/api/pruning/neuron-importance", json={"input_texts": ["Hello"], **body})
    assert response.status_code == 400
    assert message in response.get_json()["details"]


def test_corpus_indexed_in_chunks_equals_one_chunk(models_dir, tmp_path):
    """Texts cut into chunks of 2 (merged top lists) index exactly what one chunk indexes."""
    texts = [*TEXTS, "A cat sat on the mat.", "Rome, Paris and Madrid are cities."]
    contents, stats = [], []
    for chunk_texts in (2, 1000):
        app = create_app(make_settings(tmp_path / f"data-{chunk_texts}", models_dir, "tiny-llama", chunk_texts=chunk_texts))
        svc = app.extensions["neuronscope"]
        stats.append(svc.activations.index_corpus(texts, batch_size=2)["executor"])
        with svc.manager.use() as lm:
            sizes = [lm.adapter.d_mlp(layer) for layer in range(lm.adapter.n_layers)]
        contents.append(index_contents(svc.activations.index, "tiny-llama", sizes))
    assert_same_index(*contents)
    assert [s["chunks"] for s in stats] == [3, 1]


def test_the_export_history_holds_a_bounded_number_of_rows(make_app, monkeypatch):
    """Whole-model sweeps are large: the oldest analyses are dropped once the rows pass the limit."""
    monkeypatch.setattr(pruning_service, "HISTORY_ROWS", 300)
    app = make_app("tiny-gpt2")
    client = app.test_client()
    history = app.extensions["neuronscope"].pruning._history
    importance(client, layer_index=0)  # 128 rows
    client.post("/api/pruning/impact-analysis", json={"layer_index": 0, "neuron_indices": [1], "input_text": "Hello"})
    importance(client, layer_index=1)  # 256 rows in all: both kept
    assert [entry["analysis"] for entry in history] == ["neuron-importance", "impact-analysis", "neuron-importance"]
    importance(client, layer_indices="all")  # 256 rows on its own: everything older goes
    assert [entry["request"].get("layer_indices") for entry in history] == ["all"]
    exported = client.post("/api/pruning/export", json={"type": "impact"}).get_json()
    assert exported["count"] == 1
