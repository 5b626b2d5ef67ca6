"""GET/POST/DELETE /api/corpora and POST /api/corpora/{name}/index on tiny models."""

from __future__ import annotations

import io
import logging
import threading

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
        pytest.param(
            "deep.jsonl", b'{"text": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", None, "line 1 is JSON nested too deeply",
            id="deep-jsonl",
        ),
        pytest.param(
            "big.jsonl", b'{"text": "x"}\n{"text": "y", "n": ' + b"9" * 4_301 + b"}\n", None, "line 2 holds an integer",
            id="long-integer-jsonl",
        ),
        ("nul.txt", b"fine\n\nbad \x00 text", None, "line 3 contains a control character (U+0000)"),
        ("bel.jsonl", b'{"text": "bad \\u0007 text"}\n', None, 'the "text" of line 1 contains a control character (U+0007)'),
        ("esc.jsonl", b'{"text": "fine"}\n{"text": "\\u001b[31mred"}\n', None, "line 2 contains a control character (U+001B)"),
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
    client = corpus_app.test_client()
    assert client.get("/api/corpora").status_code == 200
    for name in ("default", "DEFAULT", "Default"):
        response = client.delete(f"/api/corpora/{name}")
        assert response.status_code == 400 and "cannot be deleted" in response.get_json()["details"]
    assert (corpus_app.extensions["neuronscope"].settings.data_dir / "corpora" / "default.json").is_file()


def test_names_that_differ_only_in_letter_case_are_refused(corpus_app):
    client = corpus_app.test_client()
    assert upload(client, "a.txt", b"text", name="ok_corpus").status_code == 201
    for name in ("OK_CORPUS", "Ok_Corpus"):
        taken = upload(client, "a.txt", b"other text", name=name)
        assert taken.status_code == 409 and "'ok_corpus' exists" in taken.get_json()["details"]
    for name in ("DEFAULT", "Default"):
        reserved = upload(client, "a.txt", b"text", name=name)
        assert reserved.status_code == 400 and "reserved" in reserved.get_json()["details"]
    assert [c["name"] for c in client.get("/api/corpora").get_json()["corpora"]] == ["default", "ok_corpus"]


CROSS_SITE = [
    {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example"},
    {"Origin": "http://localhost:3000"},
    {"Origin": "null"},
    {"Origin": "http://[broken"},
]


@pytest.mark.parametrize("headers", CROSS_SITE)
def test_cross_site_uploads_are_403_and_write_nothing(corpus_app, headers):
    client = corpus_app.test_client()
    data = {"file": (io.BytesIO(b"forged text"), "csrf.txt")}
    response = client.post("/api/corpora", data=data, content_type="multipart/form-data", headers=headers)
    assert response.status_code == 403 and "cross-site" in response.get_json()["details"]
    assert not (corpus_app.extensions["neuronscope"].settings.data_dir / "corpora" / "csrf.json").exists()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
        {"Sec-Fetch-Site": "none"},
        {"Origin": "HTTP://LOCALHOST"},
    ],
)
def test_same_origin_and_scripted_uploads_pass(corpus_app, headers):
    data = {"file": (io.BytesIO(b"a text"), "mine.txt")}
    response = corpus_app.test_client().post("/api/corpora", data=data, content_type="multipart/form-data", headers=headers)
    assert response.status_code == 201


def test_origins_cors_is_opened_to_may_upload(make_app):
    client = make_app(cors_origins=("http://localhost:3000",)).test_client()
    data = {"file": (io.BytesIO(b"a text"), "mine.txt")}
    headers = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
    assert client.post("/api/corpora", data=data, content_type="multipart/form-data", headers=headers).status_code == 201
    data = {"file": (io.BytesIO(b"a text"), "other.txt")}
    headers = {"Origin": "http://localhost:4000", "Sec-Fetch-Site": "same-site"}
    assert client.post("/api/corpora", data=data, content_type="multipart/form-data", headers=headers).status_code == 403


def test_a_corpus_being_indexed_cannot_be_deleted(corpus_app, monkeypatch):
    """DELETE answers 409 while the index job runs (held here inside the index pass), then deletes everything."""
    svc = corpus_app.extensions["neuronscope"]
    client = corpus_app.test_client()
    assert upload(client, "notes.txt", b"The fox runs.\n\nA cat sleeps.\n").status_code == 201
    started, release = threading.Event(), threading.Event()
    index_sequences = svc.activations.index_sequences

    def held(*args, **kwargs):
        started.set()
        release.wait(30)
        return index_sequences(*args, **kwargs)

    monkeypatch.setattr(svc.activations, "index_sequences", held)
    job_id = client.post("/api/corpora/notes/index?async=true", json={}).get_json()["job_id"]
    try:
        assert started.wait(30)
        refused = client.delete("/api/corpora/notes")
    finally:
        release.set()
    assert refused.status_code == 409 and "being indexed" in refused.get_json()["details"]
    done = wait_for_status(client, job_id, {"done", "failed"})
    assert done["status"] == "done", done
    assert client.delete("/api/corpora/notes").status_code == 200
    assert not list((svc.settings.data_dir / "corpora").glob("notes*"))


@pytest.mark.parametrize("name", ["bad name!", "../escape", "-dash", "caf\u00e9"])
def test_a_bad_corpus_name_is_refused_before_a_job_is_queued(corpus_app, name):
    client = corpus_app.test_client()
    submitted = client.post("/api/jobs", json={"endpoint": "corpora/index", "body": {"name": name}})
    assert submitted.status_code == 400 and "is not a corpus name" in submitted.get_json()["details"]
    assert client.get("/api/jobs").get_json()["jobs"] == []


@pytest.mark.parametrize("name", ["bad%20name!", "-dash"])
def test_a_bad_corpus_name_in_the_path_is_refused_before_a_job_is_queued(corpus_app, name):
    client = corpus_app.test_client()
    response = client.post(f"/api/corpora/{name}/index?async=true", json={})
    assert response.status_code == 400 and "is not a corpus name" in response.get_json()["details"]
    assert client.get("/api/jobs").get_json()["jobs"] == []


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
