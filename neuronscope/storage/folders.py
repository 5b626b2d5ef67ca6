"""Whole folders written and removed atomically: staged under a temporary name, synced, then renamed
into place; removed by a rename to a temporary name first, so they vanish at once."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from neuronscope.storage.files import FILE_MODE, FOLDER_MODE, TEMP_PREFIX


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


def _plain_modes(folder: Path) -> None:
    """Give ``folder`` and everything in it the modes of a plain ``mkdir`` and ``open`` (the
    temporary folder, and some writers' temporaries, are owner-only)."""
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(FOLDER_MODE if path.is_dir() else FILE_MODE)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``target``; when the block succeeds it is given plain
    modes, synced to disk and renamed to ``target`` (which must not exist). On failure it is removed, so ``target``
    is either absent or complete, never half-written. Temporary names start with ``.tmp-``.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=target.parent))
    try:
        yield staging
        _plain_modes(staging)
        _fsync_tree(staging)
        if os.path.lexists(target):
            raise FileExistsError(f"{target.name} appeared while it was being written")
        os.rename(staging, target)
        _fsync(target.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_folder(folder: Path) -> None:
    """Remove ``folder`` (a real folder, not a symlink) so that it disappears in one step: it is
    renamed to a temporary name beside it, then deleted. A crash in between leaves only a
    temporary that the start-up clean-up removes."""
    doomed = folder.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex[:8]}"
    os.rename(folder, doomed)
    _fsync(folder.parent)
    shutil.rmtree(doomed, ignore_errors=True)
