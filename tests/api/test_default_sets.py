"""Issue 16: the default evaluation and calibration texts come from the default corpus' splits, or
the built-in sets when the corpus cannot be built."""

import json
import shutil

import pytest

from neuronscope import create_app
from neuronscope.config import Settings
from neuronscope.corpora.texts import word_count
from neuronscope.resources.texts import builtin_texts
from neuronscope.services import build_services
from neuronscope.services.evaluation_set import EVALUATION_WORDS, DefaultSets, overlapping
from tests.support.compression_app import app, client, data_dir, lm_of, text_sets  # noqa: F401 (fixtures)


def post(client, path, body, status=200):
    response = client.post(path, json=body)
    assert response.status_code == status, response.get_json()
    return response.get_json()


def leading(texts, split, words, avoid=()):
    """The first texts of ``split`` (corpus order) until they hold ``words`` words, computed here;
    texts that overlap one of ``avoid`` are passed over."""
    chosen = []
    for text in (t["text"] for t in texts if t["split"] == split):
        if sum(map(word_count, chosen)) >= words:
            break
        if not overlapping([text], avoid):
            chosen.append(text)
    return tuple(chosen)


def test_the_default_sets_are_the_first_texts_of_the_corpus_splits(app, data_dir):
    sets = text_sets(app)
    corpus = json.loads((data_dir / "corpora" / "default.json").read_text())["texts"]
    evaluation, calibration = sets.evaluation(), sets.calibration()
    assert (evaluation.corpus, evaluation.split) == ("default", "evaluation")
    assert (calibration.corpus, calibration.split) == ("default", "calibration")
    assert evaluation.texts == leading(corpus, "evaluation", EVALUATION_WORDS)
    assert calibration.texts == leading(corpus, "calibration", Settings().calibration_words, evaluation.texts)
    assert sum(map(word_count, evaluation.texts)) >= EVALUATION_WORDS
    assert sum(map(word_count, evaluation.texts[:-1])) < EVALUATION_WORDS
    assert overlapping(calibration.texts, evaluation.texts) == []
    assert set(calibration.texts).isdisjoint(evaluation.texts)


def test_recovery_reads_the_whole_calibration_split_but_overlaps():
    corpus = [{"split": "evaluation", "text": "an evaluation text"}] + [
        {"split": "calibration", "text": f"calibration text number {i}"} for i in range(5)
    ] + [{"split": "calibration", "text": "an evaluation text"}]
    sets = DefaultSets("default", lambda: corpus, calibration_words=8)
    assert sets.calibration().texts == ("calibration text number 0", "calibration text number 1")
    assert sets.recovery().texts == tuple(f"calibration text number {i}" for i in range(5))
    assert (sets.recovery().corpus, sets.recovery().split) == ("default", "calibration")


def test_the_calibration_size_is_a_setting(app, data_dir):
    default = text_sets(app)
    settings = Settings.from_env(data_dir=data_dir, offline=True, calibration_words=600)
    sets = build_services(settings, app.extensions["neuronscope"].manager).compression.text_sets
    corpus = json.loads((data_dir / "corpora" / "default.json").read_text())["texts"]
    assert sets.calibration().texts == leading(corpus, "calibration", 600, sets.evaluation().texts)
    assert len(sets.calibration().texts) < len(default.calibration().texts)


def test_calibration_texts_repeated_in_the_evaluation_texts_are_passed_over():
    repeated = "A text long enough to count as overlap when it stands inside an evaluation text, word for word."
    corpus = [
        {"split": "evaluation", "text": f"Before it. {repeated} After it."},
        {"split": "evaluation", "text": "another evaluation text"},
        {"split": "calibration", "text": "first calibration text"},
        {"split": "calibration", "text": repeated},
        {"split": "calibration", "text": "last calibration text"},
    ]
    sets = DefaultSets("default", lambda: corpus, calibration_words=100)
    assert sets.calibration().texts == ("first calibration text", "last calibration text")
    assert sets.recovery().texts == ("first calibration text", "last calibration text")
    assert overlapping(sets.calibration().texts, sets.evaluation().texts) == []
    assert overlapping([repeated], sets.evaluation().texts) == [0]


def test_evaluation_and_plans_read_the_default_sets(client, app):
    evaluated = post(client, "/api/pruning/evaluate", {})
    sets = text_sets(app)
    assert evaluated["text_source"] == "default:evaluation"
    assert evaluated["evaluation"]["texts"] == len(sets.evaluation().texts)
    plan = post(client, "/api/pruning/plan", {"sparsity": 0.2, "method": "activation"})
    assert plan["calibration"]["text_source"] == "default:calibration"


def test_a_fresh_app_measures_the_identical_perplexity_and_token_ids(client, data_dir, tmp_path, model_name):
    first = post(client, "/api/pruning/evaluate", {})
    other = tmp_path / "other"
    shutil.copytree(data_dir / "models" / model_name, other / "models" / model_name)
    fresh = create_app(Settings.from_env(data_dir=other, model=model_name, offline=True, rate_limit_per_minute=0))
    again = post(fresh.test_client(), "/api/pruning/evaluate", {})
    assert again["evaluation"] == first["evaluation"] and again["perplexity"] == first["perplexity"]


def test_without_the_corpus_the_builtin_sets_are_used(client, app, data_dir, tmp_path):
    app.extensions["neuronscope"].corpora.fortunes_dir = tmp_path / "no-fortunes"
    evaluated = post(client, "/api/pruning/evaluate", {})
    assert (evaluated["evaluation"]["corpus"], evaluated["evaluation"]["split"]) == ("builtin", "evaluation")
    assert evaluated["text_source"] == "builtin:evaluation"
    assert evaluated["evaluation"]["texts"] == len(builtin_texts("evaluation"))
    plan = post(client, "/api/pruning/plan", {"sparsity": 0.2, "method": "activation"})
    assert plan["calibration"]["text_source"] == "builtin:calibration"
    assert not (data_dir / "corpora" / "default.json").exists()


@pytest.mark.slow
def test_the_default_evaluation_holds_20000_tokens_of_the_embedded_model(embedded_manager, tmp_path):
    services = build_services(embedded_manager.settings.with_overrides({"data_dir": tmp_path}), embedded_manager)
    with embedded_manager.use() as lm:
        measured = services.compression.sequences(lm, services.text_sets.evaluation())
    assert measured.record["corpus"] == "default" and measured.record["tokens"] >= 20_000
