"""Settings for NeuronScope, read from the environment in one place.

Every knob has an environment variable; ``run_api_server.py`` flags and the ``config``
argument of :func:`neuronscope.create_app` override them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

EMBEDDED_MODEL_NAME = "smollm2-135m-instruct"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _env_bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
"""accelerate's placement strategies accepted by ``NEURONSCOPE_DEVICE_MAP``."""
_MEMORY_DEVICES = ("cpu", "disk", "mps")
_SIZE_UNITS = {
    "": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_size(value: int | str) -> int:
    """Bytes in ``value``: an integer, or a number with a unit (``20GiB``, ``500MB``, ``64KiB``)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a memory size")
    if isinstance(value, int):
        size = value
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
        if match is None or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a memory size such as 20GiB, 500MB or a number of bytes")
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2).lower()])
    if size <= 0:
        raise ValueError(f"memory size {value!r} must be positive")
    return size


def parse_max_memory(value: str | Mapping[str | int, int | str]) -> dict[int | str, int]:
    """``NEURONSCOPE_MAX_MEMORY`` as accelerate's ``max_memory``: GPU index or cpu/disk/mps -> bytes.

    Accepts a mapping, a JSON object (``{"0": "20GiB", "cpu": "30GiB"}``) or ``0=20GiB,cpu=30GiB``.
    """
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"NEURONSCOPE_MAX_MEMORY is not valid JSON: {exc}") from exc
        else:
            pairs = [item.split("=", 1) for item in _env_list(text)]
            if any(len(pair) != 2 for pair in pairs):
                raise ValueError("NEURONSCOPE_MAX_MEMORY must look like 0=20GiB,cpu=30GiB or a JSON object")
            value = {key.strip(): size.strip() for key, size in pairs}
    if not isinstance(value, Mapping) or not value:
        raise ValueError("NEURONSCOPE_MAX_MEMORY must name at least one device")
    limits: dict[int | str, int] = {}
    for key, size in value.items():
        name = str(key).strip().lower()
        if not (name.isdigit() or name in _MEMORY_DEVICES):
            raise ValueError(f"NEURONSCOPE_MAX_MEMORY: {key!r} is not a GPU index or one of {', '.join(_MEMORY_DEVICES)}")
        try:
            limits[int(name) if name.isdigit() else name] = parse_size(size)
        except ValueError as exc:
            raise ValueError(f"NEURONSCOPE_MAX_MEMORY[{key!r}]: {exc}") from exc
    return limits


@dataclass(frozen=True)
class Settings:
    """Server configuration. Paths are absolute once built through :meth:`from_env`."""

    host: str = "127.0.0.1"
    port: int = 5001
    data_dir: Path = PROJECT_ROOT / "data"
    models_dir: Path | None = None
    model: str = EMBEDDED_MODEL_NAME
    device: str = "auto"
    device_map: str | None = None
    max_memory: Mapping[int | str, int] | None = None
    offline: bool = False
    cors_origins: tuple[str, ...] = ("*",)
    max_request_bytes: int = 1_000_000
    max_input_tokens: int = 512
    max_texts: int = 64
    max_neurons_per_request: int = 16_384
    max_top_k: int = 1_000
    max_clusters: int = 256
    max_batch_size: int = 1_024
    max_corpus_texts: int = 10_000
    index_depth: int = 50
    max_served_values: int = 5_000_000
    max_sample_chars: int = 2_000
    torch_threads: int = 0
    threads: int = 8
    preload_model: bool = True
    api_key: str | None = None
    rate_limit_per_minute: int = 120
    allowed_hosts: tuple[str, ...] = ()
    max_queued: int = 8
    queue_timeout: float = 300.0
    max_queued_jobs: int = 16
    job_history: int = 200
    cache_entries: int = 256
    cache_bytes: int = 256_000_000
    cache_persist: bool = False
    executor: str = "local"
    ray_address: str | None = None
    ray_workers: int = 0
    ray_cpus_per_worker: int = 1
    ray_gpus_per_worker: int = 1
    ray_temp_dir: Path | None = None
    chunk_neurons: int = 256
    chunk_texts: int = 256
    index_default_corpus: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def resolved_models_dir(self) -> Path:
        """Directory of local models (pruned models are saved here too)."""
        return self.models_dir if self.models_dir is not None else self.data_dir / "models"

    @property
    def model_cache_dir(self) -> Path:
        """Where converted models (e.g. the dequantised GGUF) are cached."""
        return self.data_dir / "model_cache"

    @property
    def resolved_ray_temp_dir(self) -> Path:
        """Where a local Ray instance keeps its session files (sockets, logs, spilled objects)."""
        return self.ray_temp_dir if self.ray_temp_dir is not None else self.data_dir / "ray"

    @property
    def offload_dir(self) -> Path:
        """Where accelerate may write weights offloaded to disk (one folder per model)."""
        return self.data_dir / "offload"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``env`` (default ``os.environ``), then apply ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        readers = {
            "HOST": ("host", str),
            "PORT": ("port", int),
            "NEURONSCOPE_DATA_DIR": ("data_dir", Path),
            "NEURONSCOPE_MODELS_DIR": ("models_dir", Path),
            "NEURONSCOPE_MODEL": ("model", str),
            "NEURONSCOPE_DEVICE": ("device", str),
            "NEURONSCOPE_DEVICE_MAP": ("device_map", str),
            "NEURONSCOPE_MAX_MEMORY": ("max_memory", parse_max_memory),
            "NEURONSCOPE_OFFLINE": ("offline", _env_bool),
            "NEURONSCOPE_CORS_ORIGINS": ("cors_origins", _env_list),
            "NEURONSCOPE_MAX_REQUEST_BYTES": ("max_request_bytes", int),
            "NEURONSCOPE_MAX_INPUT_TOKENS": ("max_input_tokens", int),
            "NEURONSCOPE_MAX_TEXTS": ("max_texts", int),
            "NEURONSCOPE_MAX_NEURONS": ("max_neurons_per_request", int),
            "NEURONSCOPE_MAX_TOP_K": ("max_top_k", int),
            "NEURONSCOPE_MAX_CLUSTERS": ("max_clusters", int),
            "NEURONSCOPE_MAX_BATCH_SIZE": ("max_batch_size", int),
            "NEURONSCOPE_MAX_CORPUS_TEXTS": ("max_corpus_texts", int),
            "NEURONSCOPE_INDEX_DEPTH": ("index_depth", int),
            "NEURONSCOPE_MAX_SERVED_VALUES": ("max_served_values", int),
            "NEURONSCOPE_TORCH_THREADS": ("torch_threads", int),
            "NEURONSCOPE_THREADS": ("threads", int),
            "NEURONSCOPE_API_KEY": ("api_key", str),
            "NEURONSCOPE_RATE_LIMIT": ("rate_limit_per_minute", int),
            "NEURONSCOPE_ALLOWED_HOSTS": ("allowed_hosts", _env_list),
            "NEURONSCOPE_MAX_QUEUED": ("max_queued", int),
            "NEURONSCOPE_QUEUE_TIMEOUT": ("queue_timeout", float),
            "NEURONSCOPE_MAX_QUEUED_JOBS": ("max_queued_jobs", int),
            "NEURONSCOPE_JOB_HISTORY": ("job_history", int),
            "NEURONSCOPE_CACHE_ENTRIES": ("cache_entries", int),
            "NEURONSCOPE_CACHE_BYTES": ("cache_bytes", int),
            "NEURONSCOPE_CACHE_PERSIST": ("cache_persist", _env_bool),
            "NEURONSCOPE_EXECUTOR": ("executor", str),
            "RAY_ADDRESS": ("ray_address", str),
            "NEURONSCOPE_RAY_WORKERS": ("ray_workers", int),
            "NEURONSCOPE_RAY_CPUS_PER_WORKER": ("ray_cpus_per_worker", int),
            "NEURONSCOPE_RAY_GPUS_PER_WORKER": ("ray_gpus_per_worker", int),
            "NEURONSCOPE_RAY_TEMP_DIR": ("ray_temp_dir", Path),
            "NEURONSCOPE_CHUNK_NEURONS": ("chunk_neurons", int),
            "NEURONSCOPE_CHUNK_TEXTS": ("chunk_texts", int),
            "NEURONSCOPE_INDEX_DEFAULT_CORPUS": ("index_default_corpus", _env_bool),
        }
        for var, (name, parse) in readers.items():
            if env.get(var, "").strip():
                values[name] = parse(env[var].strip())
        if "offline" not in values and _env_bool(env.get("HF_HUB_OFFLINE", "0")):
            values["offline"] = True
        values.update(overrides)
        return cls(**values).normalised()

    def normalised(self) -> "Settings":
        """Absolute paths, validated values."""
        if self.device not in {"auto", "cpu", "cuda"} and not self.device.startswith("cuda:"):
            raise ValueError(f"NEURONSCOPE_DEVICE must be auto, cpu or cuda[:N], not {self.device!r}")
        if self.device_map is not None and self.device_map not in DEVICE_MAPS:
            raise ValueError(f"NEURONSCOPE_DEVICE_MAP must be one of {', '.join(DEVICE_MAPS)}, not {self.device_map!r}")
        if self.device_map is not None and self.device != "auto":
            raise ValueError("NEURONSCOPE_DEVICE_MAP places the model itself: leave NEURONSCOPE_DEVICE at auto")
        if self.max_memory is not None and self.device_map is None:
            raise ValueError("NEURONSCOPE_MAX_MEMORY needs NEURONSCOPE_DEVICE_MAP")
        if not 0 < self.port < 65536:
            raise ValueError(f"PORT must be in 1..65535, not {self.port}")
        if "*" in self.cors_origins and len(self.cors_origins) > 1:
            raise ValueError("NEURONSCOPE_CORS_ORIGINS: '*' cannot be combined with other origins")
        if self.max_queued_jobs < 1 or self.job_history < 1:
            raise ValueError("NEURONSCOPE_MAX_QUEUED_JOBS and NEURONSCOPE_JOB_HISTORY must be >= 1")
        if self.cache_entries < 0 or self.cache_bytes < 0:
            raise ValueError("NEURONSCOPE_CACHE_ENTRIES and NEURONSCOPE_CACHE_BYTES must be >= 0 (0 disables the cache)")
        if self.executor not in {"local", "ray"}:
            raise ValueError(f"NEURONSCOPE_EXECUTOR must be local or ray, not {self.executor!r}")
        if self.ray_workers < 0 or self.ray_cpus_per_worker < 1 or self.ray_gpus_per_worker < 1:
            raise ValueError(
                "NEURONSCOPE_RAY_WORKERS must be >= 0 (0 = automatic), NEURONSCOPE_RAY_CPUS_PER_WORKER and "
                "NEURONSCOPE_RAY_GPUS_PER_WORKER >= 1"
            )
        if self.chunk_neurons < 1 or self.chunk_texts < 1:
            raise ValueError("NEURONSCOPE_CHUNK_NEURONS and NEURONSCOPE_CHUNK_TEXTS must be >= 1")
        models_dir = Path(self.models_dir).resolve() if self.models_dir is not None else None
        ray_temp_dir = Path(self.ray_temp_dir).resolve() if self.ray_temp_dir is not None else None
        max_memory = parse_max_memory(self.max_memory) if self.max_memory is not None else None
        return replace(
            self, data_dir=Path(self.data_dir).resolve(), models_dir=models_dir, ray_temp_dir=ray_temp_dir, max_memory=max_memory
        )

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """A copy with the given fields replaced (unknown names are an error)."""
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        return replace(self, **overrides).normalised()
