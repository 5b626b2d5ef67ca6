"""One calibration rule for the pruning and compression services, and scores memoized on the loaded model."""

import pytest
import torch

from neuronscope.analysis.calibration import Calibration
from neuronscope.analysis.scores import SCORERS
from neuronscope.errors import BadRequest
from neuronscope.modeling.fingerprint import weights_fingerprint
from neuronscope.resources.texts import builtin_texts
from neuronscope.services.calibration import calibration
from neuronscope.services.evaluation_set import token_digest

LIMIT = 16


def test_texts_are_cut_into_pieces_and_no_token_is_dropped(make_app):
    app = make_app(max_input_tokens=LIMIT)
    with app.extensions["neuronscope"].manager.use() as lm:
        texts = builtin_texts("calibration")[:3]
        got = calibration(lm, texts, LIMIT, seed=3)
        full = [lm.tokenizer(t, return_tensors="pt")["input_ids"][0] for t in texts]
        assert all(len(piece) <= LIMIT for piece in got.sequences)
        assert torch.equal(torch.cat(got.sequences), torch.cat(full))
        assert len(got.sequences) == sum(-(-len(ids) // LIMIT) for ids in full)
        assert got.seed == 3


def test_too_short_calibration_is_a_400(make_app):
    app = make_app()
    with app.extensions["neuronscope"].manager.use() as lm:
        with pytest.raises(BadRequest, match="too short"):
            calibration(lm, ["a"], LIMIT)


def test_pruning_candidates_score_the_calibration_of_the_samples(make_app):
    app = make_app(max_input_tokens=LIMIT)
    svc = app.extensions["neuronscope"]
    body = app.test_client().get("/api/pruning/candidates?method=activation&threshold=30&layer_index=1").get_json()
    with svc.manager.use() as lm:
        samples = svc.samples.list()[: svc.settings.max_texts]
        assert max(len(lm.tokenizer(s)["input_ids"]) for s in samples) > LIMIT  # the rule cuts, never truncates
        expected = SCORERS["activation"](lm.adapter, calibration(lm, samples, LIMIT))[1]
    scores = torch.tensor([c["score"] for c in body["candidates"]], dtype=torch.float64)
    neurons = [c["neuron_index"] for c in body["candidates"]]
    torch.testing.assert_close(scores, expected[neurons].double(), rtol=1e-6, atol=1e-9)
    assert body["calibration_texts"] == len(samples)


def test_compression_plans_calibrate_by_the_same_rule(make_app):
    app = make_app(max_input_tokens=LIMIT)
    svc = app.extensions["neuronscope"]
    body = app.test_client().post("/api/pruning/plan", json={"sparsity": 0.25, "method": "wanda"}).get_json()
    with svc.manager.use() as lm:
        expected = calibration(lm, svc.text_sets.calibration().texts, LIMIT)
    assert body["calibration"] == {
        "text_source": "default:calibration", "texts": len(expected.sequences), "tokens": expected.tokens,
        "sha256": token_digest(expected.sequences),
    }


def test_scores_are_memoized_per_loaded_model(make_app, monkeypatch):
    runs = []
    wanda = SCORERS["wanda"]
    monkeypatch.setitem(SCORERS, "wanda", type(wanda)(lambda *args: runs.append(1) or wanda.score(*args), calibrated=True))
    app = make_app()
    client = app.test_client()
    first = client.get("/api/pruning/candidates?method=wanda").get_json()
    again = client.get("/api/pruning/candidates?method=wanda&threshold=20").get_json()
    assert len(runs) == 1 and first["model_name"] == again["model_name"]
    plan = client.post("/api/pruning/plan", json={"sparsity": 0.1, "method": "wanda", "use_samples": True}).get_json()
    assert plan["method"] == "wanda" and len(runs) == 1  # the samples' calibration: the same memo entry
    assert client.post("/api/models/switch", json={"model_name": "tiny-llama"}).status_code == 200
    client.get("/api/pruning/candidates?method=wanda")
    assert len(runs) == 2


def test_the_identity_is_computed_once_and_names_the_weights(make_app):
    app = make_app()
    lm = app.extensions["neuronscope"].manager.ensure_loaded()
    assert lm.known_identity is None
    identity = lm.identity()
    assert identity == f"{lm.name}:{weights_fingerprint(lm.model, lm.tokenizer)}"
    assert lm.known_identity == identity and lm.identity() is identity


def test_an_empty_calibration_has_no_tokens():
    assert Calibration().tokens == 0 and Calibration().digest() == Calibration().digest()
