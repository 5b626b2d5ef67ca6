import re
from dataclasses import fields
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


def _readme_settings() -> list[str]:
    """Environment names in the first column of the README's configuration table."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])]


def _declared_settings() -> list[str]:
    return [var for spec in fields(Settings) for var in spec.metadata.get("env", ())]


def test_readme_configuration_table_matches_the_settings_both_ways():
    documented, declared = _readme_settings(), _declared_settings()
    assert sorted(set(declared) - set(documented)) == [], "settings missing from the README table"
    assert sorted(set(documented) - set(declared)) == [], "README names settings the code does not read"
    assert len(documented) == len(set(documented)), "a setting is listed twice in the README"


def test_every_setting_but_extra_is_declared_with_env_parser_and_help():
    for spec in fields(Settings):
        if spec.name == "extra":
            continue
        assert spec.metadata["env"] and callable(spec.metadata["parse"]) and spec.metadata["help"], spec.name


@pytest.mark.parametrize("spec", [s for s in fields(Settings) if s.metadata.get("env")], ids=lambda s: s.name)
def test_each_declared_variable_reaches_its_field(spec):
    """Every variable is read: the field's value comes from the variable's text, not the default."""
    samples = {
        "data_dir": "/tmp/ns-x", "models_dir": "/tmp/ns-m", "ray_temp_dir": "/tmp/ns-r", "host": "0.0.0.0",
        "device": "cpu", "device_map": "sequential", "executor": "ray", "port": "5123",
    }
    text = samples.get(spec.name)
    if text is None:
        default = spec.default
        text = {bool: "0" if default else "1", int: "7", float: "7.5", tuple: "http://a.example"}.get(type(default), "x7")
    env = {var: text for var in spec.metadata["env"][:1]}
    if spec.name == "max_memory":
        env = {"NEURONSCOPE_MAX_MEMORY": "cpu=1GiB", "NEURONSCOPE_DEVICE_MAP": "sequential"}
    settings = Settings.from_env(env)
    assert getattr(settings, spec.name) != spec.default


def test_hf_hub_offline_is_the_second_name_of_offline():
    assert Settings.from_env({"HF_HUB_OFFLINE": "1"}).offline is True
    assert Settings.from_env({"HF_HUB_OFFLINE": "1", "NEURONSCOPE_OFFLINE": "0"}).offline is False


def test_a_bad_variable_names_itself():
    with pytest.raises(ValueError, match="NEURONSCOPE_MAX_TEXTS"):
        Settings.from_env({"NEURONSCOPE_MAX_TEXTS": "many"})


def test_event_streams_always_leave_two_threads():
    assert Settings.from_env({}, threads=3, max_event_streams=10).event_stream_limit == 1
    assert Settings.from_env({}, threads=16, max_event_streams=4).event_stream_limit == 4
