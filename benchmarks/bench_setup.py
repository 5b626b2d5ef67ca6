"""What the benchmarks share: the model options and a scratch data dir reusing a converted-model cache."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from neuronscope.config import Settings


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--models-dir`` and ``--model-cache``."""
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--models-dir", type=Path, help="folder of local models (for tiny test models)")
    parser.add_argument("--model-cache", type=Path, default=Path("/tmp/ns-embedded-data/model_cache"),
                        help="converted-model cache to reuse (created when missing)")


def scratch_settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings on a fresh data dir under /tmp (a short path: Ray's socket paths live under it)
    whose ``model_cache`` is the shared ``--model-cache``."""
    root = Path(tempfile.mkdtemp(prefix="nsb-"))
    args.model_cache.mkdir(parents=True, exist_ok=True)
    (root / "model_cache").symlink_to(args.model_cache.resolve(), target_is_directory=True)
    return Settings.from_env(data_dir=root, models_dir=args.models_dir, model=args.model, offline=True, **overrides)
