"""Settings for NeuronScope, read from the environment in one place.

Every knob is declared once, as a :class:`Settings` field built by :func:`setting` (default,
environment variable, parser and help together); ``run_api_server.py`` flags and the ``config``
argument of :func:`neuronscope.create_app` override them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping

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


def _env_bytes(value: str) -> int:
    """A byte count with an optional unit; ``0`` (no limit) allowed."""
    return 0 if value.strip() == "0" else parse_size(value)


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


def setting(default: Any, env: str | tuple[str, ...], parse: Callable[[str], Any], help: str) -> Any:
    """Declare one setting: its default, environment variable(s) (the first one set wins),
    the parser of the variable's text, and the help line the README's table shows."""
    names = (env,) if isinstance(env, str) else env
    return field(default=default, metadata={"env": names, "parse": parse, "help": help})


@dataclass(frozen=True)
class Settings:
    """Server configuration, one declaration per setting. Paths are absolute once built through
    :meth:`from_env`."""

    host: str = setting("127.0.0.1", "HOST", str, "address to bind; never `0.0.0.0` unless you ask")
    port: int = setting(5001, "PORT", int, "port")
    data_dir: Path = setting(PROJECT_ROOT / "data", "NEURONSCOPE_DATA_DIR", Path, "every file the server writes")
    models_dir: Path | None = setting(None, "NEURONSCOPE_MODELS_DIR", Path, "local model folders")
    model: str = setting(EMBEDDED_MODEL_NAME, "NEURONSCOPE_MODEL", str, "model loaded at start-up")
    device: str = setting("auto", "NEURONSCOPE_DEVICE", str, "auto, cpu, cuda or cuda:N")
    device_map: str | None = setting(None, "NEURONSCOPE_DEVICE_MAP", str, "spread the model with accelerate")
    max_memory: Mapping[int | str, int] | None = setting(None, "NEURONSCOPE_MAX_MEMORY", parse_max_memory, "memory per device")
    offline: bool = setting(False, ("NEURONSCOPE_OFFLINE", "HF_HUB_OFFLINE"), _env_bool, "never try the Hub")
    cors_origins: tuple[str, ...] = setting((), "NEURONSCOPE_CORS_ORIGINS", _env_list, "foreign origins allowed by CORS")
    max_request_bytes: int = setting(1_000_000, "NEURONSCOPE_MAX_REQUEST_BYTES", parse_size, "larger bodies get 413")
    max_header_bytes: int = setting(32_768, "NEURONSCOPE_MAX_HEADER_BYTES", parse_size, "larger request headers get 431")
    max_input_tokens: int = setting(512, "NEURONSCOPE_MAX_INPUT_TOKENS", int, "tokens per text")
    max_texts: int = setting(64, "NEURONSCOPE_MAX_TEXTS", int, "texts per request")
    max_neurons_per_request: int = setting(16_384, "NEURONSCOPE_MAX_NEURONS", int, "neuron indices per request")
    max_top_k: int = setting(1_000, "NEURONSCOPE_MAX_TOP_K", int, "bound of top_k")
    max_clusters: int = setting(256, "NEURONSCOPE_MAX_CLUSTERS", int, "bound of n_clusters")
    max_batch_size: int = setting(1_024, "NEURONSCOPE_MAX_BATCH_SIZE", int, "bound of batch_size")
    max_corpus_texts: int = setting(10_000, "NEURONSCOPE_MAX_CORPUS_TEXTS", int, "texts per corpus")
    index_depth: int = setting(50, "NEURONSCOPE_INDEX_DEPTH", int, "top activations kept per neuron in the index")
    max_served_values: int = setting(5_000_000, "NEURONSCOPE_MAX_SERVED_VALUES", int, "activation values per response")
    max_sample_chars: int = setting(2_000, "NEURONSCOPE_MAX_SAMPLE_CHARS", int, "characters per sample")
    torch_threads: int = setting(0, "NEURONSCOPE_TORCH_THREADS", int, "torch intra-op threads")
    threads: int = setting(16, "NEURONSCOPE_THREADS", int, "waitress worker threads")
    preload_model: bool = setting(True, "NEURONSCOPE_PRELOAD", _env_bool, "load the model at start-up")
    api_key: str | None = setting(None, "NEURONSCOPE_API_KEY", str, "X-API-Key required when set")
    rate_limit_per_minute: int = setting(120, "NEURONSCOPE_RATE_LIMIT", int, "requests a minute per client and route")
    allowed_hosts: tuple[str, ...] = setting((), "NEURONSCOPE_ALLOWED_HOSTS", _env_list, "extra Host-header names")
    max_queued: int = setting(8, "NEURONSCOPE_MAX_QUEUED", int, "requests allowed to wait for the model")
    queue_timeout: float = setting(300.0, "NEURONSCOPE_QUEUE_TIMEOUT", float, "seconds a request waits for the model")
    max_queued_jobs: int = setting(16, "NEURONSCOPE_MAX_QUEUED_JOBS", int, "background jobs allowed to wait")
    job_history: int = setting(200, "NEURONSCOPE_JOB_HISTORY", int, "finished jobs kept in memory")
    max_event_streams: int = setting(4, "NEURONSCOPE_MAX_EVENT_STREAMS", int, "open job event streams")
    event_stream_seconds: float = setting(1_800.0, "NEURONSCOPE_EVENT_STREAM_SECONDS", float, "lifetime of one event stream")
    event_heartbeat_seconds: float = setting(10.0, "NEURONSCOPE_EVENT_HEARTBEAT_SECONDS", float, "keep-alive interval of event streams")
    max_saved_models: int = setting(20, "NEURONSCOPE_MAX_SAVED_MODELS", int, "models saved by apply")
    max_data_bytes: int = setting(50 * 10**9, "NEURONSCOPE_MAX_DATA_BYTES", _env_bytes, "bytes under the data directory")
    cache_entries: int = setting(256, "NEURONSCOPE_CACHE_ENTRIES", int, "result-cache entries")
    cache_bytes: int = setting(256_000_000, "NEURONSCOPE_CACHE_BYTES", int, "result-cache bytes")
    cache_persist: bool = setting(False, "NEURONSCOPE_CACHE_PERSIST", _env_bool, "keep cached results across restarts")
    executor: str = setting("local", "NEURONSCOPE_EXECUTOR", str, "local or ray")
    ray_address: str | None = setting(None, "RAY_ADDRESS", str, "the Ray cluster to join")
    ray_workers: int = setting(0, "NEURONSCOPE_RAY_WORKERS", int, "Ray actors (0 = automatic)")
    ray_cpus_per_worker: int = setting(1, "NEURONSCOPE_RAY_CPUS_PER_WORKER", int, "CPUs per Ray actor")
    ray_gpus_per_worker: int = setting(1, "NEURONSCOPE_RAY_GPUS_PER_WORKER", int, "GPUs per Ray actor")
    ray_temp_dir: Path | None = setting(None, "NEURONSCOPE_RAY_TEMP_DIR", Path, "a local Ray instance's session files")
    chunk_neurons: int = setting(256, "NEURONSCOPE_CHUNK_NEURONS", int, "neurons per importance chunk")
    chunk_texts: int = setting(64, "NEURONSCOPE_CHUNK_TEXTS", int, "texts per indexing chunk (between chunks, waiting requests run)")
    sync_budget_seconds: float = setting(60.0, "NEURONSCOPE_SYNC_BUDGET_SECONDS", float, "estimated seconds of work a synchronous request may start")
    index_default_corpus: bool = setting(False, "NEURONSCOPE_INDEX_DEFAULT_CORPUS", _env_bool, "index the default corpus for the loaded model in the background at start-up (run_api_server.py turns it on)")
    calibration_words: int = setting(6_000, "NEURONSCOPE_CALIBRATION_WORDS", int, "words of the default calibration texts (the first texts of the default corpus' calibration split)")
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Free-form values for tests and embedders; not read from the environment."""

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

    @property
    def event_stream_limit(self) -> int:
        """Event streams allowed at once: ``max_event_streams``, but always two worker threads
        fewer than ``threads``, so streams can never hold every thread."""
        return max(0, min(self.max_event_streams, self.threads - 2))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Build settings from ``env`` (default ``os.environ``), then apply ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for spec in fields(cls):
            for var in spec.metadata.get("env", ()):
                text = env.get(var, "").strip()
                if text:
                    try:
                        values[spec.name] = spec.metadata["parse"](text)
                    except ValueError as exc:
                        raise ValueError(f"{var}: {exc}") from exc
                    break
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
        if self.max_event_streams < 0 or self.event_stream_seconds <= 0 or self.event_heartbeat_seconds <= 0:
            raise ValueError(
                "NEURONSCOPE_MAX_EVENT_STREAMS must be >= 0, NEURONSCOPE_EVENT_STREAM_SECONDS and "
                "NEURONSCOPE_EVENT_HEARTBEAT_SECONDS > 0"
            )
        if self.max_saved_models < 0 or self.max_data_bytes < 0:
            raise ValueError("NEURONSCOPE_MAX_SAVED_MODELS and NEURONSCOPE_MAX_DATA_BYTES must be >= 0 (0 = no limit)")
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
        if not self.sync_budget_seconds > 0:
            raise ValueError("NEURONSCOPE_SYNC_BUDGET_SECONDS must be > 0")
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


def settings_help() -> str:
    """One line per setting: its environment variable(s), default and help (for ``--help``)."""
    lines = []
    for spec in fields(Settings):
        if spec.metadata.get("env"):
            default = spec.default if spec.default not in (None, ()) else "unset"
            lines.append(f"  {' / '.join(spec.metadata['env'])} (default {default}): {spec.metadata['help']}")
    return "\n".join(lines)
