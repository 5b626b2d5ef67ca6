"""A model name is a registry name, a real folder directly in the models directory, or a Hub id
looked up in the Hugging Face cache: never a path, never relative to the working directory,
never through a symlink."""

import shutil
from pathlib import Path

import huggingface_hub.constants
import pytest

from neuronscope.modeling import loading, registry


@pytest.fixture
def hostile_cwd(tmp_path, models_dir, monkeypatch) -> Path:
    """A working directory holding real and symlinked model folders under names a client might send."""
    cwd = tmp_path / "cwd"
    (cwd / "cwdorg").mkdir(parents=True)
    (cwd / "cwdorg" / "linked").symlink_to(models_dir / "tiny-gpt2")
    shutil.copytree(models_dir / "tiny-gpt2", cwd / "cwdorg" / "copied")
    shutil.copytree(models_dir / "tiny-gpt2", cwd / "data")
    shutil.copytree(models_dir / "tiny-llama", cwd / "plainfolder")
    monkeypatch.chdir(cwd)
    return cwd


@pytest.mark.parametrize("name", ["cwdorg/linked", "cwdorg/copied", "data", "plainfolder"])
def test_folders_in_the_working_directory_are_never_loaded(make_app, hostile_cwd, name):
    client = make_app().test_client()
    response = client.post("/api/models/switch", json={"model_name": name})
    assert response.status_code in (404, 503), response.get_json()
    assert set(response.get_json()) == {"error", "details"}
    assert str(hostile_cwd) not in response.get_json()["details"]
    assert client.get("/api/health").get_json()["model_name"] in (None, "tiny-gpt2")


def _linked_models_dir(tmp_path: Path, models_dir: Path, how: str) -> Path:
    folder = tmp_path / f"models-{how}"
    folder.mkdir()
    if how == "folder-symlink":
        (folder / "sneaky").symlink_to(models_dir / "tiny-gpt2")
    elif how == "config-symlink":
        (folder / "sneaky").mkdir()
        for item in (models_dir / "tiny-gpt2").iterdir():
            (folder / "sneaky" / item.name).symlink_to(item) if item.name == "config.json" else shutil.copy(item, folder / "sneaky")
    else:  # a file, not a folder
        (folder / "sneaky").write_text("{}")
    return folder


@pytest.mark.parametrize("how", ["folder-symlink", "config-symlink", "plain-file"])
def test_symlinks_and_files_in_the_models_directory_are_not_models(make_app, models_dir, tmp_path, how):
    linked = _linked_models_dir(tmp_path, models_dir, how)
    assert registry.local_model_dir(linked, "sneaky") is None
    app = make_app(models_dir=linked)
    assert "sneaky" not in app.test_client().get("/api/models").get_json()["models"]
    assert app.test_client().post("/api/models/switch", json={"model_name": "sneaky"}).status_code in (404, 503)


def test_a_relative_models_directory_is_never_used_as_is():
    assert registry.local_model_dir(Path("relative/models"), "tiny-gpt2") is None


@pytest.fixture
def hub_cache(tmp_path, models_dir, monkeypatch) -> Path:
    """A Hugging Face cache holding the tiny GPT-2 as ``testorg/tiny``."""
    cache = tmp_path / "hf-cache"
    repo = cache / "models--testorg--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    shutil.copytree(models_dir / "tiny-gpt2", repo / "snapshots" / ("0" * 40))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_hub_id_loads_from_the_hugging_face_cache(make_app, hub_cache, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    client = make_app().test_client()
    response = client.post("/api/models/switch", json={"model_name": "testorg/tiny"})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["current_model"] == "testorg/tiny"
    assert loading.cached_snapshot("testorg/tiny").is_absolute()


def test_a_hub_id_is_not_found_in_the_working_directory_even_when_cached_elsewhere(make_app, hub_cache, hostile_cwd):
    assert loading.cached_snapshot("cwdorg/copied") is None
    assert make_app().test_client().post("/api/models/switch", json={"model_name": "cwdorg/copied"}).status_code == 404
