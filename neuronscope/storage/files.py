"""Atomic JSON files inside one folder of the data directory, addressed by plain names only."""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from neuronscope.errors import BadRequest, NotFound

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
TEMP_PREFIX = ".tmp-"
TEMP_NAME = re.compile(r"\.tmp-[a-z0-9_]{8}")
"""The exact names our atomic writers give temporaries: ``TEMP_PREFIX`` and ``tempfile``'s 8 characters."""


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _process_umask()
FILE_MODE = 0o666 & ~_UMASK
FOLDER_MODE = 0o777 & ~_UMASK
"""The modes a plain ``open`` or ``mkdir`` would give under the process' umask (read once, at import):
what the atomic writers give their files and folders, rather than ``tempfile``'s owner-only modes."""


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so a crash leaves either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any, *, indent: int | None = None) -> None:
    """Serialise ``data`` as JSON and write it atomically."""
    atomic_write_bytes(path, json.dumps(data, indent=indent, allow_nan=False).encode("utf-8"))


def validate_plain_name(name: str, *, suffix: str = ".json") -> str:
    """Return ``name`` if it is a plain file name ending in ``suffix``; else raise 400.

    Plain means: letters, digits, ``.``, ``_``, ``-``; no separators, no ``..``, no leading dot.
    """
    if not isinstance(name, str) or not _PLAIN_NAME.match(name) or ".." in name or not name.endswith(suffix):
        raise BadRequest(f"{name!r} is not a plain {suffix} file name (letters, digits, '.', '_', '-')")
    return name


class JsonFolder:
    """One kind of result file (activations, clusters, ...): a folder of ``*.json`` files."""

    def __init__(self, folder: Path, kind: str):
        self.folder = folder
        self.kind = kind

    def path_for(self, name: str) -> Path:
        """The path of file ``name`` inside the folder (the name is validated, never resolved outside)."""
        return self.folder / validate_plain_name(name)

    def list(self) -> list[str]:
        """Names of the regular (non-symlink, non-temporary) JSON files, sorted."""
        if not self.folder.is_dir():
            return []
        return sorted(
            entry.name
            for entry in os.scandir(self.folder)
            if entry.name.endswith(".json")
            and not entry.name.startswith(".")
            and entry.is_file(follow_symlinks=False)
        )

    def read(self, name: str) -> Any:
        """Parsed content of file ``name``; 404 when absent, a symlink, or not a regular file."""
        path = self.path_for(name)
        if path.is_symlink() or not path.is_file():
            raise NotFound(f"no {self.kind} file named {name!r}")
        with open(path, "rb") as handle:
            return json.load(handle)

    def write(self, name: str, data: Any) -> Path:
        """Atomically write ``data`` as file ``name``; returns its path."""
        path = self.path_for(name)
        atomic_write_json(path, data)
        return path

    def exists(self, name: str) -> bool:
        path = self.path_for(name)
        return path.is_file() and not path.is_symlink()
