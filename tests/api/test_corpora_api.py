"""GET/POST/DELETE /api/corpora and POST /api/corpora/{name}/index on tiny models."""

from __future__ import annotations

import io
import logging

import pytest

from neuronscope.storage.index import ActivationIndex

from tests.support.corpus_support import write_cookies
from tests.support.jobs_support import Interleaving, wait_for_status
from run_api_server import start_default_indexing


@pytest.fixture
def corpus_app(make_app, tmp_path):
    """An app whose default corpus is read from a small fortunes-format folder."""
    app = make_app()
    app.extensions["neuronscope"].corpora.fortunes_dir = write_cookies(tmp_path / "fortunes")
    return app


def upload(client, filename: str, payload: bytes, name: str | None = None):
    data = {"file": (io.BytesIO(payload), filename), **({"name": name} if name else {})}
    return client.post("/api/corpora", data=data, content_type="multipart/form-data")


def test_default_corpus_is_listed_with_its_splits(corpus_app):
    body = corpus_app.test_client().get("/api/corpora").get_json()
    assert [c["name"] for c in body["corpora"]] == ["default"]
    default = body["corpora"][0]
    assert default["splits"]["explore"] + default["splits"]["calibration"] + default["splits"]["evaluation"] == default["texts"]
    assert "fortunes" in default["source"] and default["licence"] and default["indexed_models"] == []


def test_default_corpus_missing_package_is_503(make_app, tmp_path):
    app = make_app()
    app.extensions["neuronscope"].corpora.fortunes_dir = tmp_path / "absent"
    response = app.test_client().post("/api/corpora/default/index", json={})
    assert response.status_code == 503 and "fortunes" in response.get_json()["details"]


def test_upload_index_reindex_and_delete(corpus_app):
    client = corpus_app.test_client()
    response = upload(client, "notes.txt", "The fox runs.\n\nA cat sleeps.\n  \nRome is old.\n".encode())
    assert response.status_code == 201
    assert response.get_json()["texts"] == 3 and response.get_json()["name"] == "notes"
    first = client.post("/api/corpora/notes/index", json={})
    assert first.status_code == 200
    assert first.get_json()["texts_indexed"] == 3 and first.get_json()["split"] == "explore"
    again = client.post("/api/corpora/notes/index", json={}).get_json()
    assert again["texts_indexed"] == 0 and again["texts_skipped"] == 3
    listed = {c["name"]: c for c in client.get("/api/corpora").get_json()["corpora"]}
    assert listed["notes"]["indexed_models"] == [{"model_name": "tiny-gpt2", "texts": 3, "tokens": first.get_json()["tokens_indexed"]}]
    assert client.delete("/api/corpora/notes").status_code == 200
    assert "notes" not in {c["name"] for c in client.get("/api/corpora").get_json()["corpora"]}
    assert not list((corpus_app.extensions["neuronscope"].settings.data_dir / "corpora").glob("notes*"))
    assert client.delete("/api/corpora/notes").status_code == 404


def test_jsonl_upload_and_conflicts(corpus_app):
    client = corpus_app.test_client()
    payload = b'{"text": "one text"}\n\n{"text": "caf\\u00e9 two"}\n'
    assert upload(client, "x.jsonl", payload, name="mine").get_json()["texts"] == 2
    assert upload(client, "x.jsonl", payload, name="mine").status_code == 409
    assert upload(client, "x.txt", b"text", name="default").status_code == 400


@pytest.mark.parametrize(
    "filename, payload, name, words",
    [
        ("bad.txt", b"caf\xe9 latin-1", None, "UTF-8"),
        ("bad.jsonl", b'{"text": "\\ud800 alone"}\n', None, "surrogate"),
        ("bad.jsonl", b'{"txt": "no text key"}\n', None, "text"),
        ("bad.jsonl", b"not json\n", None, "JSON"),
        ("empty.txt", b"\n \n\n", None, "no text"),
        ("bad.csv", b"a,b", None, ".txt"),
        ("../escape.txt", b"hello", None, "plain"),
        ("ok.txt", b"hello", "../escape", "corpus name"),
        ("ok.txt", b"hello", "a/b", "corpus name"),
    ],
)
def test_invalid_uploads_are_400_and_write_nothing(corpus_app, filename, payload, name, words):
    client = corpus_app.test_client()
    response = upload(client, filename, payload, name)
    assert response.status_code == 400
    assert words in response.get_json()["details"]
    folder = corpus_app.extensions["neuronscope"].settings.data_dir / "corpora"
    assert not folder.exists() or not [p for p in folder.iterdir() if p.name != "default.json"]


def test_oversized_and_non_multipart_uploads_are_refused(make_app):
    client = make_app(max_request_bytes=2_000).test_client()
    assert upload(client, "big.txt", b"word " * 1_000).status_code == 413
    response = client.post("/api/corpora", json={"text": "x"})
    assert response.status_code == 415


def test_deleting_the_default_corpus_is_refused(corpus_app):
    response = corpus_app.test_client().delete("/api/corpora/default")
    assert response.status_code == 400


def test_start_indexes_the_default_corpus_in_a_job(corpus_app):
    client = corpus_app.test_client()
    start_default_indexing(corpus_app, logging.getLogger("test"))
    job = client.get("/api/jobs").get_json()["jobs"][0]
    done = wait_for_status(client, job["job_id"], {"done", "failed"})
    assert done["endpoint"] == "corpora/index" and done["params"]["name"] == "default"
    assert done["status"] == "done", done
    index = ActivationIndex(corpus_app.extensions["neuronscope"].settings.data_dir / "corpora" / "default.index.sqlite3")
    explore = {str(t["id"]) for t in corpus_app.extensions["neuronscope"].corpora.get("default")["texts"] if t["split"] == "explore"}
    assert index.indexed_names("tiny-gpt2", "corpus", sorted(explore)) == explore


def test_a_request_sent_while_a_corpus_is_indexed_runs_between_two_chunks(make_app, tmp_path, monkeypatch):
    """The index job hands the model to a waiting request between chunks (one text per chunk here),
    health shows the job meanwhile, and the index is whole in the end."""
    app = make_app(chunk_texts=1)
    svc = app.extensions["neuronscope"]
    svc.corpora.fortunes_dir = write_cookies(tmp_path / "fortunes")
    order = Interleaving(svc.manager)
    monkeypatch.setattr(svc.executor, "run", order.step(svc.executor.run))
    monkeypatch.setattr(svc.pruning, "weight_analysis", order.request(svc.pruning.weight_analysis))
    client = app.test_client()
    job_id = client.post("/api/corpora/default/index?async=true", json={}).get_json()["job_id"]
    assert order.started.wait(30)
    health = client.get("/api/health").get_json()
    assert health["jobs"]["running"]["job_id"] == job_id and health["jobs"]["running"]["endpoint"] == "corpora/index"
    assert health["waiting_for_model"] == 0 and health["jobs"]["queued"] == 0
    assert client.get("/api/pruning/weight-analysis").status_code == 200
    done = wait_for_status(client, job_id, {"done", "failed"})
    assert done["status"] == "done", done
    chunks = done["result"]["executor"]["chunks"]
    assert chunks >= 2 and done["result"]["texts_indexed"] == chunks
    assert order.events == ["step", "request"] + ["step"] * (chunks - 1)
    assert client.get("/api/health").get_json()["jobs"] == {"running": None, "queued": 0}


def test_queries_read_the_default_corpus_when_nothing_else_is_indexed(corpus_app):
    client = corpus_app.test_client()
    svc = corpus_app.extensions["neuronscope"]
    body = {"layer_index": 1, "neuron_index": 3, "top_k": 5}
    empty = client.post("/api/queries/neuron", json=body).get_json()
    assert empty["index"]["corpus"] is None and empty["top_tokens"] == []
    assert "/api/corpora/default/index" in empty["message"]
    assert client.post("/api/corpora/default/index", json={}).status_code == 200
    found = client.post("/api/queries/neuron", json=body).get_json()
    with svc.manager.use() as lm:
        expected = svc.corpora.store.index("default").top(lm.name, 1, 3, 5)
    assert expected and found["index"]["corpus"] == found["query"]["corpus"] == "default"
    assert [t["activation"] for t in found["top_tokens"]] == [round(float(h.activation), 6) for h in expected]
    assert found["index"]["corpus_texts"] == svc.corpora.describe("default")["indexed_models"][0]["texts"]
    assert client.post("/api/activations/corpus", json={"texts": ["Some text to index."]}).status_code == 200
    own = client.post("/api/queries/neuron", json=body).get_json()
    assert own["index"]["corpus"] is None and own["index"]["corpus_texts"] == 1
    named = client.post("/api/queries/neuron", json={**body, "corpus": "default"}).get_json()
    assert named["top_tokens"] == found["top_tokens"] and named["filename"] != own["filename"]
    missing = client.post("/api/queries/neuron", json={**body, "corpus": "nope"})
    assert missing.status_code == 404 and "nope" in missing.get_json()["details"]
