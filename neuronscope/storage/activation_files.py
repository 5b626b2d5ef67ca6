"""Activation files: a JSON file of metadata plus a binary ``.npz`` sidecar of float32 activations.

``<stem>.json`` holds the prompt, tokens and model; ``<stem>.npz`` holds one array
``layer_<L>`` ``[tokens, neurons]`` per layer. The sidecar is written first, so a listed
``.json`` always has its sidecar. Only the ``.json`` name is ever accepted from clients.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from neuronscope.errors import NotFound
from neuronscope.storage.files import JsonFolder, atomic_write_bytes

SIDECAR_SUFFIX = ".npz"


def layer_key(layer: int) -> str:
    return f"layer_{layer}"


class ActivationStore:
    """The activation files of one data directory."""

    def __init__(self, folder: Path):
        self.files = JsonFolder(folder, "activation")

    def list(self) -> list[str]:
        return self.files.list()

    def save(self, name: str, meta: dict[str, Any], layers: Sequence[np.ndarray]) -> None:
        """Write the sidecar of ``layers`` (each ``[tokens, neurons]``) and then the metadata file ``name``."""
        buffer = io.BytesIO()
        np.savez(buffer, **{layer_key(i): np.asarray(acts, dtype=np.float32) for i, acts in enumerate(layers)})
        atomic_write_bytes(self._sidecar(name), buffer.getvalue())
        self.files.write(name, meta)

    def meta(self, name: str) -> dict[str, Any]:
        """The metadata of file ``name`` (400 for a bad name, 404 when absent)."""
        return self.files.read(name)

    def layers(self, name: str, layers: Sequence[int]) -> dict[int, np.ndarray]:
        """``{layer: [tokens, neurons]}`` float32 activations of ``layers`` from the sidecar of ``name``."""
        path = self._sidecar(name)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        except OSError as exc:
            raise NotFound(f"the activations of {name!r} are missing") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise NotFound(f"the activations of {name!r} are missing")
        with os.fdopen(fd, "rb") as handle, np.load(handle, allow_pickle=False) as archive:
            return {layer: archive[layer_key(layer)] for layer in layers}

    def _sidecar(self, name: str) -> Path:
        return self.files.path_for(name).with_suffix(SIDECAR_SUFFIX)
