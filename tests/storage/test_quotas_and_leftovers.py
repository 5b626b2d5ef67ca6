"""Write quotas (saved models, bytes under data/), DELETE of saved models, start-up removal of
crash leftovers, and reads that answer when their side-save fails."""

import errno
import os
import shutil
import time
from pathlib import Path

import pytest

from neuronscope.storage.files import JsonFolder
from neuronscope.storage.leftovers import atomic_write_folders, remove_stale_temporaries
from neuronscope.storage.quota import tree_bytes

NEURONS = [{"layer_index": 1, "neuron_indices": [0, 1]}]


def apply(client, name: str):
    return client.post("/api/pruning/apply", json={"neurons": NEURONS, "output_name": name, "evaluate": False})


def settings_of(app):
    return app.extensions["neuronscope"].settings


def test_saved_model_quota_refuses_before_any_work(make_app, models_dir, tmp_path):
    own = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-gpt2", own / "tiny-gpt2")  # models other tests saved do not count here
    app = make_app(max_saved_models=2, models_dir=own)
    client = app.test_client()
    assert [apply(client, n).status_code for n in ("one", "two")] == [201, 201]
    models = settings_of(app).resolved_models_dir
    before = sorted(p.name for p in models.iterdir())
    refused = apply(client, "three")
    assert refused.status_code == 507 and set(refused.get_json()) == {"error", "details"}
    assert "DELETE /api/models" in refused.get_json()["details"]
    assert sorted(p.name for p in models.iterdir()) == before
    assert client.delete("/api/models/one").status_code == 200
    assert apply(client, "three").status_code == 201


@pytest.mark.parametrize("budget_of", [lambda used, model: used + model // 2, lambda used, model: 1])
def test_data_byte_quota_counts_what_is_there_and_what_would_be_written(make_app, tmp_path, budget_of):
    app = make_app()
    settings = settings_of(app)
    lm = app.extensions["neuronscope"].manager.ensure_loaded()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "filler.bin").write_bytes(b"x" * 10_000)
    budget = budget_of(tree_bytes(settings.data_dir), lm.parameter_bytes())
    app = make_app(max_data_bytes=budget)
    response = apply(app.test_client(), "too-big")
    assert response.status_code == 507 and "NEURONSCOPE_MAX_DATA_BYTES" in response.get_json()["details"]
    assert not (settings.resolved_models_dir / "too-big").exists()


def test_a_generous_byte_quota_lets_apply_through(make_app):
    assert apply(make_app(max_data_bytes=10**12).test_client(), "fits").status_code == 201


def test_delete_removes_only_models_the_server_saved(make_app, models_dir, tmp_path):
    import shutil

    local = tmp_path / "own-models"
    shutil.copytree(models_dir, local)
    app = make_app(models_dir=local)
    client = app.test_client()
    assert apply(client, "pruned").status_code == 201
    assert "pruned" in client.get("/api/models").get_json()["models"]
    response = client.delete("/api/models/pruned")
    assert response.status_code == 200 and response.get_json()["deleted"] == "pruned"
    assert response.get_json()["freed_bytes"] > 0
    assert not (local / "pruned").exists() and "pruned" not in client.get("/api/models").get_json()["models"]
    assert client.delete("/api/models/pruned").status_code == 404
    assert not [p for p in local.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.parametrize(
    "name,status",
    [("tiny-gpt2", 409), ("tiny-llama", 409), ("gpt2", 409), ("smollm2-135m-instruct", 409),
     ("EleutherAI/pythia-70m", 409), ("never-saved", 404), ("..", 400), ("a..b", 400), ("%2e%2e%2fetc", 400)],
)
def test_delete_refuses_loaded_registry_and_hand_placed_models(make_app, name, status):
    client = make_app().test_client()
    client.post("/api/models/switch", json={"model_name": "tiny-gpt2"})
    response = client.delete(f"/api/models/{name}")
    assert response.status_code == status, response.get_json()
    assert set(response.get_json()) == {"error", "details"}


def test_the_loaded_saved_model_cannot_be_deleted(make_app):
    client = make_app().test_client()
    assert apply(client, "mine").status_code == 201
    assert client.post("/api/models/switch", json={"model_name": "mine"}).status_code == 200
    assert client.delete("/api/models/mine").status_code == 409
    client.post("/api/models/switch", json={"model_name": "tiny-gpt2"})
    assert client.delete("/api/models/mine").status_code == 200


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_start_up_removes_only_our_old_temporaries(make_app, tmp_path):
    data = tmp_path / "data"
    places = [data, data / "models", data / "activations", data / "jobs", data / "cache", data / "model_cache"]
    keep, gone = [], []
    for place in places:
        place.mkdir(parents=True, exist_ok=True)
        old_dir, old_file = place / ".tmp-abc_1234", place / ".tmp-zz9x8y7w"
        (old_dir / "sub").mkdir(parents=True)
        (old_dir / "sub" / "weights").write_bytes(b"w" * 100)
        old_file.write_bytes(b"partial")
        fresh = place / ".tmp-fresh123"
        fresh.write_bytes(b"in progress")
        foreign = [place / ".tmp-user-notes", place / "tmp-abcdefgh", place / ".tmp-ABCDEFGH", place / "keep.json"]
        for item in foreign:
            item.write_bytes(b"not ours")
        for item in (old_dir, old_file, *foreign):
            _age(item, 3_600)
        gone += [old_dir, old_file]
        keep += [fresh, *foreign]
    target = tmp_path / "outside"
    target.mkdir()
    (target / "precious").write_text("x")
    link = data / ".tmp-link0000"
    link.symlink_to(target)
    _age(link, 3_600)
    make_app()
    assert [p for p in gone if os.path.lexists(p)] == []
    assert [p for p in keep if not p.exists()] == []
    assert not os.path.lexists(link) and (target / "precious").exists()


def test_leftovers_in_foreign_folders_and_deep_folders_are_left_alone(tmp_path):
    from neuronscope.config import Settings

    settings = Settings.from_env({}, data_dir=tmp_path / "data")
    ray_leftover = settings.data_dir / "ray" / ".tmp-abcdefgh"
    ray_leftover.mkdir(parents=True)
    _age(ray_leftover, 3_600)
    folders = atomic_write_folders(settings)
    assert settings.data_dir / "ray" not in folders
    assert remove_stale_temporaries(folders) == [] and ray_leftover.exists()


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_read_answers_when_its_query_file_cannot_be_saved(client, monkeypatch):
    monkeypatch.setattr(JsonFolder, "write", _disk_full)
    for top_k in (1, 5):
        response = client.post("/api/queries/neuron", json={"layer_index": 0, "neuron_index": 1, "top_k": top_k})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["saved"] is False and "filename" not in body and "top_tokens" in body


def test_a_saved_query_says_so(client):
    body = client.post("/api/queries/neuron", json={"layer_index": 0, "neuron_index": 1}).get_json()
    assert body["saved"] is True and client.get(f"/api/queries/{body['filename']}").status_code == 200


@pytest.mark.parametrize(
    "method,path,body",
    [("POST", "/api/samples", {"prompt": "a new sample"}), ("POST", "/api/pruning/export", {"type": "weight"})],
)
def test_writes_on_a_full_disk_answer_507_not_500(client, monkeypatch, method, path, body):
    import neuronscope.storage.files as files

    monkeypatch.setattr(files.tempfile, "mkstemp", _disk_full)
    response = client.open(path, method=method, json=body)
    assert response.status_code == 507 and set(response.get_json()) == {"error", "details"}


def test_models_whose_name_slugs_agree_keep_their_own_query_files(make_app, models_dir, tmp_path):
    folder = tmp_path / "models"
    for name in ("tiny-gpt2", "tiny.gpt2"):
        shutil.copytree(models_dir / "tiny-gpt2", folder / name)
    client = make_app(model="tiny-gpt2", models_dir=folder).test_client()
    query = {"layer_index": 0, "neuron_index": 1, "top_k": 2}
    first = client.post("/api/queries/neuron", json=query).get_json()
    assert client.post("/api/models/switch", json={"model_name": "tiny.gpt2"}).status_code == 200
    second = client.post("/api/queries/neuron", json=query).get_json()
    assert first["filename"] != second["filename"]
    for saved in (first, second):
        assert client.get(f"/api/queries/{saved['filename']}").get_json()["model_name"] == saved["model_name"]
