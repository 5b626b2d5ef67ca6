"""Whole folders written atomically: staged under a temporary name, synced, then renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from neuronscope.storage.files import TEMP_PREFIX


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        _fsync(path)
    _fsync(folder)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; when the block succeeds it is synced to
    disk and renamed to ``target`` (which must not exist). On failure it is removed, so ``target``
    is either absent or complete, never half-written. Temporary names start with ``.tmp-``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=target.parent))
    try:
        yield staging
        _fsync_tree(staging)
        if os.path.lexists(target):
            raise FileExistsError(f"{target.name} appeared while it was being written")
        os.rename(staging, target)
        _fsync(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
