"""Start-up clean-up of what crashed atomic writes leave behind: our own temporaries, once old."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Iterable

from neuronscope.config import Settings
from neuronscope.storage.files import TEMP_NAME

log = logging.getLogger(__name__)

STALE_AFTER_S = 600.0
"""A temporary this many seconds old belongs to no write in progress (writes finish or fail sooner)."""
_FOREIGN_FOLDERS = frozenset({"ray", "offload"})
"""Folders under the data directory that other programs (Ray, accelerate) manage."""


def atomic_write_folders(settings: Settings) -> list[Path]:
    """Where our atomic writers put temporaries: the data directory, its folders and their folders
    (results, jobs, cache, models, converted models), and the models directory."""
    roots = [settings.data_dir, settings.resolved_models_dir]
    folders = list(roots)
    for child in _subfolders(settings.data_dir):
        if child.name not in _FOREIGN_FOLDERS:
            folders += [child, *_subfolders(child)]
    return list(dict.fromkeys(folders))


def remove_stale_temporaries(folders: Iterable[Path], *, older_than_s: float = STALE_AFTER_S) -> list[Path]:
    """Delete the entries of ``folders`` named exactly like our temporaries and untouched for
    ``older_than_s`` seconds (symlinks are removed, never followed); returns what was removed."""
    cutoff = time.time() - older_than_s
    removed = []
    for folder in folders:
        for entry in _entries(folder):
            if not TEMP_NAME.fullmatch(entry.name):
                continue
            try:
                if entry.stat(follow_symlinks=False).st_mtime > cutoff:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                log.warning("could not remove the leftover %s", entry.path)
                continue
            removed.append(Path(entry.path))
    if removed:
        log.info("removed %d leftover temporaries of interrupted writes", len(removed))
    return removed


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except OSError:
        return []


def _subfolders(folder: Path) -> list[Path]:
    return [Path(e.path) for e in _entries(folder) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")]
