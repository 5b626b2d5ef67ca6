"""GET /api/neurons/{layer}/{neuron} on tiny models against independent computations."""

from __future__ import annotations

import io
import sqlite3
from collections import Counter

import numpy as np
import pytest
import torch

from neuronscope.analysis.neuron_stats import MIN_TOKEN_COUNT
from neuronscope.analysis.tokens import indexable_positions, token_strings

from tests.support.activation_helpers import captured

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Hello world, this is a test for pruning analysis.",
    "Machine learning is fascinating and neurons are interesting.",
    "One two three four five six seven eight nine ten.",
    "def add(a, b): return a + b",
] * 6


@pytest.fixture(params=["tiny-gpt2", "tiny-llama"])
def indexed(request, make_app):
    app = make_app(request.param)
    client = app.test_client()
    payload = "\n\n".join(TEXTS).encode()
    assert client.post("/api/corpora", data={"file": (io.BytesIO(payload), "small.txt")}, content_type="multipart/form-data").status_code == 201
    assert client.post("/api/corpora/small/index", json={}).status_code == 200
    return app, client


def explore_activations(app, layer: int):
    """Every indexable activation of the explore split, by an independent capture, and per text its ids and acts."""
    svc = app.extensions["neuronscope"]
    with svc.manager.use() as lm:
        texts = [t for t in svc.corpora.get("small")["texts"] if t["split"] == "explore"]
        per_text = {}
        for t in texts:
            ids = lm.tokenizer(t["text"])["input_ids"]
            per_text[str(t["id"])] = (ids, captured(lm.model, lm.adapter, ids)[layer])
        every = np.concatenate([acts[np.array(indexable_positions(lm.tokenizer, ids))] for ids, acts in per_text.values()])
        return lm, per_text, every


def forward_calls(model) -> tuple[list, object]:
    """A list that grows by one per forward pass of ``model``'s backbone, and the hook's handle."""
    calls: list = []
    return calls, model.base_model.register_forward_pre_hook(lambda *_: calls.append(1))


@pytest.mark.parametrize("stored_windows", [True, False], ids=["windows stored", "windows computed"])
@pytest.mark.parametrize("layer, neuron", [(0, 3), (1, 40)])
def test_page_matches_an_independent_capture(indexed, layer, neuron, stored_windows):
    """With the windows the indexing pass stored, the page runs no forward pass; an index without
    them (from before they were stored) gives the same page from one forward pass."""
    app, client = indexed
    svc = app.extensions["neuronscope"]
    if not stored_windows:
        with sqlite3.connect(svc.corpora.store.index("small").path) as conn:
            conn.execute("UPDATE neuron_tops SET windows = NULL")
            conn.execute("UPDATE neuron_bottoms SET windows = NULL")
    calls, handle = forward_calls(svc.manager.ensure_loaded().model)
    try:
        page = client.get(f"/api/neurons/{layer}/{neuron}?corpus=small").get_json()
    finally:
        handle.remove()
    assert (len(calls) == 0) == stored_windows
    lm, per_text, every = explore_activations(app, layer)
    assert page["status"] == {"state": "indexed"} and page["model_name"] == lm.name
    assert page["model_identity"].startswith(f"{lm.name}:")
    column = every[:, neuron]
    for examples, ordered in ((page["top_examples"], -np.sort(-column)), (page["bottom_examples"], np.sort(column))):
        assert 0 < len(examples) <= 20
        expected = ordered[: len(examples)]
        np.testing.assert_allclose([e["max_activation"] for e in examples], expected, rtol=1e-4, atol=1e-5)
        for example in examples:
            ids, acts = per_text[example["text_id"]]
            assert len(example["tokens"]) == len(example["activations"]) <= 32
            start = next(
                s for s in range(len(ids))
                if np.allclose(acts[s : s + len(example["activations"]), neuron], example["activations"], rtol=1e-4, atol=1e-5)
            )
            assert example["activations"][example["max_position"]] == pytest.approx(example["max_activation"], rel=1e-4, abs=1e-5)
            assert acts[start + example["max_position"], neuron] == pytest.approx(example["max_activation"], rel=1e-4, abs=1e-5)
    stats = page["activation_stats"]
    assert stats["tokens"] == len(column)
    assert stats["mean"] == pytest.approx(column.astype(np.float64).mean(), abs=1e-5)
    assert stats["std"] == pytest.approx(column.astype(np.float64).std(), abs=1e-5)
    assert stats["fraction_positive"] == pytest.approx((column > 0).mean(), abs=1e-6)
    assert sum(stats["histogram"]["counts"]) == len(column) and len(stats["histogram"]["counts"]) <= 50
    assert stats["histogram"]["edges"][0] == pytest.approx(column.min(), abs=1e-5)
    assert stats["histogram"]["edges"][-1] == pytest.approx(column.max(), abs=1e-5)
    assert [q["q"] for q in stats["quantiles"]] == [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    quantiles = [q["value"] for q in stats["quantiles"]]
    assert quantiles[3] == pytest.approx(np.median(column), abs=0.2 * (abs(np.median(column)) + 0.01))
    assert quantiles == sorted(quantiles) and column.min() - 1e-5 <= quantiles[0] and quantiles[-1] <= column.max() + 1e-5


def test_output_tokens_are_the_formula(indexed):
    app, client = indexed
    page = client.get("/api/neurons/1/7?corpus=small").get_json()
    svc = app.extensions["neuronscope"]
    with svc.manager.use() as lm, torch.no_grad():
        w = lm.adapter.w_out(1)[7]
        logits = lm.model.get_output_embeddings().weight @ (lm.adapter.final_norm().weight * w)
    promoted = [t["token_id"] for t in page["output_tokens"]["promoted"]]
    suppressed = [t["token_id"] for t in page["output_tokens"]["suppressed"]]
    assert promoted == torch.argsort(logits, descending=True)[:20].tolist()
    assert suppressed == torch.argsort(logits)[:20].tolist()
    assert [t["value"] for t in page["output_tokens"]["promoted"]] == pytest.approx(torch.sort(logits, descending=True).values[:20].tolist(), abs=1e-5)
    assert len(page["similar_neurons"]) == 10
    candidates = client.get("/api/pruning/candidates?threshold=100&layer_index=1").get_json()["candidates"]
    mine = next(c for c in candidates if c["neuron_index"] == 7)
    assert page["weights"]["methods"]["magnitude"]["rank"] == mine["weight_rank"]
    assert page["weights"]["methods"]["magnitude"]["score"] == pytest.approx(mine["weight_magnitude"], abs=1e-6)


def test_nothing_indexed_is_200_with_a_status(make_app, tmp_path):
    from tests.support.corpus_support import write_cookies

    app = make_app()
    app.extensions["neuronscope"].corpora.fortunes_dir = write_cookies(tmp_path / "fortunes")
    body = app.test_client().get("/api/neurons/0/1").get_json()
    assert body["status"] == {"state": "not_indexed"} and body["corpus"] == "default"
    assert body["top_examples"] == [] and body["activation_stats"] is None and len(body["output_tokens"]["promoted"]) == 20


@pytest.mark.parametrize("path, status", [
    ("/api/neurons/2/0", 400), ("/api/neurons/0/128", 400), ("/api/neurons/-1/0", 400), ("/api/neurons/a/0", 400),
    ("/api/neurons/0/0?corpus=nope", 404), ("/api/neurons/0/0?corpus=../x", 400),
])
def test_bad_requests(make_app, path, status):
    response = make_app().test_client().get(path)
    assert response.status_code == status and "error" in response.get_json()


def test_search_by_token_equals_mean_activations_over_the_corpus(indexed):
    app, client = indexed
    svc = app.extensions["neuronscope"]
    with svc.manager.use() as lm:
        token_id = lm.tokenizer(" capital", add_special_tokens=False)["input_ids"]
    assert len(token_id) == 1
    body = client.get(f"/api/neurons/search?token=%20capital&corpus=small&layer=1&k=5").get_json()
    assert body["token_id"] == token_id[0] and len(body["neurons"]) == 5
    _, per_text, _ = explore_activations(app, 1)
    at_token = np.concatenate([acts[np.array(ids) == token_id[0]] for ids, acts in per_text.values()])  # [occurrences, d_mlp]
    means = at_token.astype(np.float64).mean(axis=0)
    assert body["occurrences"] == len(at_token)
    assert [n["neuron"] for n in body["neurons"]] == np.argsort(-means, kind="stable")[:5].tolist()
    np.testing.assert_allclose([n["mean_activation"] for n in body["neurons"]], np.sort(means)[::-1][:5], rtol=1e-4, atol=1e-5)
    by_id = client.get(f"/api/neurons/search?token={token_id[0]}&corpus=small&layer=1&k=5").get_json()
    assert by_id["neurons"] == body["neurons"]
    assert client.get("/api/neurons/search?token=capital%20city&corpus=small").status_code == 400


def test_search_by_text_and_neuron_activations_equal_a_capture(indexed):
    app, client = indexed
    text = "The capital of Italy is Rome."
    per_token = client.get(f"/api/neurons/search?text={text}&k=3").get_json()["tokens"]
    one = client.get(f"/api/neurons/1/9/activations?text={text}").get_json()
    svc = app.extensions["neuronscope"]
    with svc.manager.use() as lm:
        ids = lm.tokenizer(text)["input_ids"]
        layers = captured(lm.model, lm.adapter, ids)
    every = np.concatenate(layers, axis=1)  # [seq, 2 * d_mlp]
    d_mlp = layers[0].shape[1]
    assert [t["token_id"] for t in per_token] == ids
    for position, entry in enumerate(per_token):
        best = np.argsort(-every[position], kind="stable")[:3]
        assert [(n["layer"], n["neuron"]) for n in entry["neurons"]] == [(int(b) // d_mlp, int(b) % d_mlp) for b in best]
    in_layer = client.get(f"/api/neurons/search?text={text}&k=3&layer=1").get_json()["tokens"]
    for position, entry in enumerate(in_layer):
        best = np.argsort(-layers[1][position], kind="stable")[:3]
        assert [(n["layer"], n["neuron"]) for n in entry["neurons"]] == [(1, int(b)) for b in best]
    np.testing.assert_allclose(one["activations"], layers[1][:, 9], rtol=1e-4, atol=1e-5)
    assert one["max_position"] == int(np.argmax(layers[1][:, 9])) and one["token_ids"] == ids


def test_page_answers_with_indexing_status_while_a_job_holds_the_model(make_app, tmp_path, gate):
    from tests.support.corpus_support import write_cookies
    from tests.support.jobs_support import GATED, wait_for_status

    app = make_app()
    app.extensions["neuronscope"].corpora.fortunes_dir = write_cookies(tmp_path / "fortunes")
    client = app.test_client()
    client.get("/api/neurons/0/1")  # loads the model
    holder = client.post("/api/jobs", json={"endpoint": GATED, "body": {}}).get_json()["job_id"]
    assert gate.reached[0].wait(timeout=20)
    queued = client.post("/api/corpora/default/index?async=true", json={}).get_json()["job_id"]
    body = client.get("/api/neurons/0/1").get_json()
    assert body["status"] == {"state": "indexing", "progress": 0.0, "job_id": queued}
    assert len(body["output_tokens"]["promoted"]) == 20 and body["top_examples"] == []
    gate.open_all()
    assert wait_for_status(client, holder, {"done"})["status"] == "done"
    assert wait_for_status(client, queued, {"done"})["status"] == "done"
    assert client.get("/api/neurons/0/1").get_json()["status"] == {"state": "indexed"}


def test_a_recreated_corpus_never_gets_the_old_pages(indexed):
    """Pages are memoised per index version: deleting a corpus and uploading other texts under its
    name (the same number of texts) gives pages of the new texts."""
    app, client = indexed
    before = client.get("/api/neurons/0/3?corpus=small").get_json()
    assert client.delete("/api/corpora/small").status_code == 200
    other = "\n\n".join(" ".join(reversed(t.split())) for t in TEXTS).encode()
    assert client.post("/api/corpora", data={"file": (io.BytesIO(other), "small.txt")}, content_type="multipart/form-data").status_code == 201
    assert client.post("/api/corpora/small/index", json={}).status_code == 200
    after = client.get("/api/neurons/0/3?corpus=small").get_json()
    assert after["top_examples"] != before["top_examples"]
    svc = app.extensions["neuronscope"]
    texts = {str(t["id"]): t["text"] for t in svc.corpora.get("small")["texts"]}
    with svc.manager.use() as lm:
        for example in after["top_examples"] + after["bottom_examples"]:
            tokens = token_strings(lm.tokenizer, lm.tokenizer(texts[example["text_id"]])["input_ids"])
            n = len(example["tokens"])
            assert any(tokens[s : s + n] == example["tokens"] for s in range(len(tokens) - n + 1))


def test_a_token_without_statistics_is_not_said_to_occur_zero_times(indexed):
    app, client = indexed
    _, per_text, _ = explore_activations(app, 1)
    counts = Counter(token for ids, _ in per_text.values() for token in ids)
    rare = next(token for token, count in counts.items() if count < MIN_TOKEN_COUNT)
    body = client.get(f"/api/neurons/search?token={rare}&corpus=small").get_json()
    assert body["neurons"] == [] and body["occurrences"] is None and "at least 5 times" in body["message"]


def test_a_query_names_corpus_texts_as_the_neuron_page_does(indexed):
    _, client = indexed
    query = client.post("/api/queries/neuron", json={"layer_index": 1, "neuron_index": 3, "top_k": 5, "corpus": "small"}).get_json()
    page = client.get("/api/neurons/1/3?corpus=small").get_json()
    examples = [(e["text_id"], e["max_activation"]) for e in page["top_examples"]]
    assert len(query["top_tokens"]) == 5
    for entry in query["top_tokens"]:
        assert entry["source_kind"] == "corpus"
        assert any(text_id == entry["text_id"] and act == pytest.approx(entry["activation"], rel=1e-5, abs=1e-6) for text_id, act in examples)
