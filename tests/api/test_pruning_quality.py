"""Issue 16: reproducible evaluation records, plan-time estimates, compensation, sweeps, saved-model trust."""

import hashlib
import shutil

import pytest
import torch
import transformers

from neuronscope import create_app
from neuronscope.config import Settings
from neuronscope.resources.texts import builtin_texts
from neuronscope.services.evaluation_set import evaluation_set, overlapping

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world, this is a test for pruning analysis.",
    "One two three four five six seven eight nine ten.",
]


@pytest.fixture
def data_dir(tmp_path, models_dir, model_name):
    data = tmp_path / "data"
    shutil.copytree(models_dir / model_name, data / "models" / model_name)
    return data


@pytest.fixture
def app(data_dir, model_name):
    return create_app(Settings.from_env(data_dir=data_dir, model=model_name, offline=True, rate_limit_per_minute=0))


@pytest.fixture
def client(app):
    return app.test_client()


def lm_of(app):
    return app.extensions["neuronscope"].manager.ensure_loaded()


def post(client, path, body, status=200):
    response = client.post(path, json=body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


# -- 1. evaluation you can reproduce -------------------------------------------------------------


def test_the_evaluation_record_names_the_token_ids_and_a_rerun_is_identical(client, app):
    first = post(client, "/api/pruning/evaluate", {})
    second = post(client, "/api/pruning/evaluate", {"ablate": [{"layer_index": 0, "neuron_indices": [1]}]})
    again = post(client, "/api/pruning/evaluate", {})
    record = first["evaluation"]
    assert again["perplexity"] == first["perplexity"] and again["evaluation"] == record == second["evaluation"]

    lm = lm_of(app)
    limit = record["max_length"]
    pieces = []
    for text in evaluation_set().texts:
        ids = lm.tokenizer(text)["input_ids"]
        pieces += [ids[i:i + limit] for i in range(0, len(ids), limit) if len(ids[i:i + limit]) >= 2]
    digest = hashlib.sha256()
    for piece in pieces:
        digest.update(len(piece).to_bytes(8, "little") + b"".join(i.to_bytes(8, "little") for i in piece))
    assert record["sha256"] == digest.hexdigest()
    assert record["tokens"] == sum(map(len, pieces)) and record["sequences"] == len(pieces)
    assert record["texts"] == len(builtin_texts("evaluation"))
    assert (record["corpus"], record["split"]) == ("builtin", "evaluation")
    assert record["dtype"] == "float32" and record["torch"] == torch.__version__
    assert record["transformers"] == transformers.__version__
    assert first["tokens"] == record["tokens"] - record["sequences"]


def test_given_texts_are_recorded_as_such(client):
    body = post(client, "/api/pruning/evaluate", {"texts": TEXTS})
    assert (body["evaluation"]["corpus"], body["evaluation"]["split"], body["evaluation"]["texts"]) == ("texts", None, 3)


def test_calibration_overlapping_evaluation_is_refused_unless_allowed(client, data_dir):
    evaluation = builtin_texts("evaluation")
    leaked = ["An unrelated sentence about nothing much.", "  " + evaluation[2][:90].replace(" ", "\n ") + " "]
    body = {"sparsity": 0.2, "method": "activation", "texts": leaked}
    response = client.post("/api/pruning/plan", json=body)
    assert response.status_code == 400 and "overlap" in response.get_json()["details"]
    assert "[1]" in response.get_json()["details"]
    assert not (data_dir / "pruning").exists() or not any((data_dir / "pruning").iterdir())
    post(client, "/api/pruning/plan", {**body, "allow_overlap": True})
    post(client, "/api/pruning/plan", {**body, "texts": leaked[:1]})


def test_the_overlap_rule():
    evaluation = ["A paragraph of evaluation text that is long enough to be counted as such, surely."]
    assert overlapping(["a paragraph"], evaluation) == []
    assert overlapping(["x " + evaluation[0] + " y", "A paragraph of evaluation text that is long enough to be counted as"], evaluation) == [0, 1]
    assert overlapping(builtin_texts("calibration"), builtin_texts("evaluation")) == []
