"""An LRU cache of analysis results, keyed by model identity, endpoint and normalised parameters.

Entries are stored as their JSON text, so a hit always returns a fresh, identical copy and the
cache's size in bytes is known. Optionally the entries are mirrored as files under one folder
(``<data_dir>/cache/``, written atomically), so a restarted server still answers from them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path

from neuronscope.storage.files import atomic_write_bytes

log = logging.getLogger(__name__)


def cache_key(identity: str, endpoint: str, params: dict) -> str:
    """A digest of (model identity, endpoint, parameters); parameter order does not matter."""
    material = json.dumps([identity, endpoint, params], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class ResultCache:
    """At most ``max_entries`` results and ``max_bytes`` of JSON; the least recently used go first.

    ``folder``: where to persist entries (``None``: memory only). ``max_entries=0`` disables the cache.
    """

    def __init__(self, max_entries: int, max_bytes: int, folder: Path | None = None):
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.folder = folder
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def get(self, key: str) -> dict | None:
        """The cached result for ``key`` (a new copy), or ``None``."""
        if not self.enabled:
            return None
        with self._lock:
            payload = self._entries.get(key)
            if payload is None:
                payload = self._load(key)
            if payload is None:
                return None
            self._entries.move_to_end(key)
        return json.loads(payload)

    def put(self, key: str, result: dict) -> None:
        """Remember ``result`` under ``key`` (results that are not strict JSON are not cached)."""
        if not self.enabled:
            return
        try:
            payload = json.dumps(result, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            log.warning("result not cached: %s", exc)
            return
        if len(payload) > self.max_bytes:
            return
        with self._lock:
            self._remember(key, payload)
            self._save(key, payload)

    def clear(self) -> int:
        """Forget every entry (and its file); returns how many were in memory."""
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            for path in self._files():
                path.unlink(missing_ok=True)
        return count

    def stats(self) -> dict:
        with self._lock:
            return {
                "enabled": self.enabled,
                "entries": len(self._entries),
                "bytes": self._bytes,
                "max_entries": self.max_entries,
                "max_bytes": self.max_bytes,
                "persisted": self.folder is not None,
            }

    def _remember(self, key: str, payload: bytes) -> None:
        old = self._entries.pop(key, None)
        self._bytes -= len(old) if old is not None else 0
        self._entries[key] = payload
        self._bytes += len(payload)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted)

    def _path(self, key: str) -> Path | None:
        return self.folder / f"{key}.json" if self.folder is not None else None

    def _load(self, key: str) -> bytes | None:
        path = self._path(key)
        if path is None or path.is_symlink() or not path.is_file():
            return None
        try:
            payload = path.read_bytes()
            json.loads(payload)
            os.utime(path)
        except (OSError, ValueError):
            log.warning("ignoring unreadable cache file %s", path.name)
            return None
        self._remember(key, payload)
        return payload

    def _save(self, key: str, payload: bytes) -> None:
        path = self._path(key)
        if path is None:
            return
        try:
            atomic_write_bytes(path, payload)
            self._prune_files()
        except OSError:
            log.exception("could not persist a cache entry under %s", self.folder)

    def _files(self) -> list[Path]:
        if self.folder is None or not self.folder.is_dir():
            return []
        return [
            Path(entry.path)
            for entry in os.scandir(self.folder)
            if entry.name.endswith(".json") and not entry.name.startswith(".") and entry.is_file(follow_symlinks=False)
        ]

    def _prune_files(self) -> None:
        """Keep the persisted entries within the same bounds, dropping the least recently used."""
        files = sorted(self._files(), key=lambda path: path.stat().st_mtime, reverse=True)
        kept_bytes = 0
        for index, path in enumerate(files):
            kept_bytes += path.stat().st_size
            if index >= self.max_entries or kept_bytes > self.max_bytes:
                path.unlink(missing_ok=True)
