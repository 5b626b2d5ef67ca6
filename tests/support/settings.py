"""Settings for a test app: offline, a fresh data directory, the tiny models' folder."""

from __future__ import annotations

from pathlib import Path

from neuronscope.config import Settings


def make_settings(data_dir: Path, models_dir: Path, model: str = "tiny-gpt2", **overrides) -> Settings:
    """Offline unless ``overrides`` say ``offline=False``."""
    return Settings.from_env(data_dir=data_dir, models_dir=models_dir, model=model, **{"offline": True, **overrides})
