"""Corpora on disk: ``data/corpora/<name>.json`` (written atomically) and, per corpus, its own
activation index ``data/corpora/<name>.index.sqlite3`` (one per corpus, keyed by model inside)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from neuronscope.errors import BadRequest, NotFound
from neuronscope.storage.files import atomic_write_json
from neuronscope.storage.index import ActivationIndex

_CORPUS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def check_corpus_name(name: str) -> str:
    """``name`` if it is a corpus name (letters, digits, ``_``, ``-``; at most 64), else 400."""
    if not isinstance(name, str) or not _CORPUS_NAME.match(name):
        raise BadRequest(f"{name!r} is not a corpus name (1-64 letters, digits, '_' or '-', not starting with '_' or '-')")
    return name


class CorpusStore:
    """The corpus files and their indexes under one folder; reads are memoised by modification time."""

    def __init__(self, folder: Path, depth: int):
        self.folder = folder
        self.depth = depth
        self._lock = threading.Lock()
        self._memo: dict[str, tuple[float, dict]] = {}
        self._indexes: dict[str, ActivationIndex] = {}

    def _path(self, name: str) -> Path:
        return self.folder / f"{check_corpus_name(name)}.json"

    def names(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.name[: -len(".json")] for p in self.folder.glob("*.json") if p.is_file() and not p.is_symlink())

    def same_name(self, name: str) -> str | None:
        """The stored corpus whose name equals ``name`` but for letter case (the same file on a
        case-insensitive filesystem), if any."""
        folded = name.casefold()
        return next((stored for stored in self.names() if stored.casefold() == folded), None)

    def exists(self, name: str) -> bool:
        path = self._path(name)
        return path.is_file() and not path.is_symlink()

    def read(self, name: str) -> dict:
        """The corpus record ``{name, source, licence, created_at, texts: [{id, split, category, text}]}``; 404 when absent."""
        if not self.exists(name):
            raise NotFound(f"no corpus named {name!r}")
        path = self._path(name)
        mtime = path.stat().st_mtime
        with self._lock:
            memo = self._memo.get(name)
            if memo is not None and memo[0] == mtime:
                return memo[1]
        record = json.loads(path.read_bytes())
        with self._lock:
            self._memo[name] = (mtime, record)
        return record

    def write(self, record: dict) -> None:
        atomic_write_json(self._path(record["name"]), record)

    def index(self, name: str) -> ActivationIndex:
        """The activation index of corpus ``name`` (created on first use)."""
        check_corpus_name(name)
        with self._lock:
            if name not in self._indexes:
                self._indexes[name] = ActivationIndex(self.folder / f"{name}.index.sqlite3", self.depth)
            return self._indexes[name]

    def has_index(self, name: str) -> bool:
        return (self.folder / f"{check_corpus_name(name)}.index.sqlite3").is_file()

    def delete(self, name: str) -> None:
        """Remove corpus ``name`` and its index; 404 when absent."""
        if not self.exists(name):
            raise NotFound(f"no corpus named {name!r}")
        with self._lock:
            self._indexes.pop(name, None)
            self._memo.pop(name, None)
        self._path(name).unlink()
        for suffix in (".index.sqlite3", ".index.sqlite3-wal", ".index.sqlite3-shm"):
            (self.folder / f"{name}{suffix}").unlink(missing_ok=True)
