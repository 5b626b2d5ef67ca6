"""Storage quotas: how many models the server may save, and how many bytes the data directory may hold."""

from __future__ import annotations

import os
from pathlib import Path

from neuronscope.config import Settings
from neuronscope.errors import InsufficientStorage


def tree_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (symlinks are not followed)."""
    total, pending = 0, [folder]
    while pending:
        try:
            with os.scandir(pending.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue
    return total


class StorageQuota:
    """``NEURONSCOPE_MAX_SAVED_MODELS`` and ``NEURONSCOPE_MAX_DATA_BYTES``, checked before a write
    starts (0 = no limit). Saved models are the folders of the models directory holding ``record``."""

    def __init__(self, settings: Settings, record: str):
        self.settings = settings
        self.record = record

    def saved_models(self) -> list[str]:
        """Names of the models the server saved (folders with the record file), sorted."""
        folder = self.settings.resolved_models_dir
        if not folder.is_dir():
            return []
        return sorted(
            entry.name for entry in os.scandir(folder)
            if entry.is_dir(follow_symlinks=False) and (Path(entry.path) / self.record).is_file()
        )

    def used_bytes(self) -> int:
        """Bytes under the data directory, plus the models directory when it lies elsewhere."""
        data, models = self.settings.data_dir, self.settings.resolved_models_dir
        return tree_bytes(data) + (0 if models.is_relative_to(data) else tree_bytes(models))

    def check_room_for_model(self, estimated_bytes: int) -> None:
        """507 when one more saved model, of about ``estimated_bytes``, would exceed a quota."""
        limit = self.settings.max_saved_models
        if limit and len(self.saved_models()) >= limit:
            raise InsufficientStorage(
                f"{limit} saved models already (NEURONSCOPE_MAX_SAVED_MODELS); "
                "free one with DELETE /api/models/{name}"
            )
        budget = self.settings.max_data_bytes
        if budget:
            used = self.used_bytes()
            if used + estimated_bytes > budget:
                raise InsufficientStorage(
                    f"saving about {estimated_bytes} bytes would bring the data directory to {used + estimated_bytes} "
                    f"bytes, over NEURONSCOPE_MAX_DATA_BYTES ({budget}); delete saved models or results first"
                )
