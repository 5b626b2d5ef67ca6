from pathlib import Path

import pytest

from neuronscope.config import EMBEDDED_MODEL_NAME, Settings


def test_defaults_bind_localhost_on_5001_with_embedded_model():
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1"
    assert settings.port == 5001
    assert settings.model == EMBEDDED_MODEL_NAME
    assert settings.device == "auto"
    assert settings.data_dir.name == "data" and settings.data_dir.is_absolute()
    assert settings.resolved_models_dir == settings.data_dir / "models"
    assert settings.model_cache_dir == settings.data_dir / "model_cache"
    assert settings.executor == "local" and settings.resolved_ray_temp_dir == settings.data_dir / "ray"


def test_environment_names_are_read(tmp_path: Path):
    env = {
        "HOST": "0.0.0.0",
        "PORT": "5123",
        "NEURONSCOPE_DATA_DIR": str(tmp_path),
        "NEURONSCOPE_MODEL": "gpt2",
        "NEURONSCOPE_DEVICE": "cpu",
        "NEURONSCOPE_MAX_INPUT_TOKENS": "64",
        "NEURONSCOPE_MAX_REQUEST_BYTES": "2048",
        "NEURONSCOPE_CORS_ORIGINS": "http://a.example, http://b.example",
        "HF_HUB_OFFLINE": "1",
        "NEURONSCOPE_EXECUTOR": "ray",
        "RAY_ADDRESS": "ray://head:10001",
        "NEURONSCOPE_RAY_WORKERS": "4",
        "NEURONSCOPE_RAY_CPUS_PER_WORKER": "2",
        "NEURONSCOPE_RAY_GPUS_PER_WORKER": "2",
        "NEURONSCOPE_RAY_TEMP_DIR": "/tmp/nsray",
        "NEURONSCOPE_CHUNK_NEURONS": "128",
        "NEURONSCOPE_CHUNK_TEXTS": "64",
    }
    settings = Settings.from_env(env)
    assert (settings.host, settings.port, settings.model, settings.device) == ("0.0.0.0", 5123, "gpt2", "cpu")
    assert settings.data_dir == tmp_path.resolve()
    assert settings.max_input_tokens == 64 and settings.max_request_bytes == 2048
    assert settings.cors_origins == ("http://a.example", "http://b.example")
    assert settings.offline is True
    assert (settings.executor, settings.ray_address, settings.ray_workers, settings.ray_cpus_per_worker) == (
        "ray", "ray://head:10001", 4, 2
    )
    assert settings.ray_gpus_per_worker == 2 and settings.resolved_ray_temp_dir == Path("/tmp/nsray")
    assert (settings.chunk_neurons, settings.chunk_texts) == (128, 64)


def test_overrides_beat_environment():
    assert Settings.from_env({"PORT": "5123"}, port=6000).port == 6000


@pytest.mark.parametrize(
    "env",
    [
        {"NEURONSCOPE_DEVICE": "tpu"},
        {"PORT": "70000"},
        {"NEURONSCOPE_EXECUTOR": "dask"},
        {"NEURONSCOPE_RAY_WORKERS": "-1"},
        {"NEURONSCOPE_RAY_CPUS_PER_WORKER": "0"},
        {"NEURONSCOPE_RAY_GPUS_PER_WORKER": "0"},
        {"NEURONSCOPE_CHUNK_NEURONS": "0"},
        {"NEURONSCOPE_CHUNK_TEXTS": "0"},
    ],
)
def test_invalid_values_are_refused(env):
    with pytest.raises(ValueError):
        Settings.from_env(env)
