"""Sample prompts: a starter set, persisted under the data directory with atomic writes."""

from __future__ import annotations

import json
import threading
from importlib import resources
from pathlib import Path

from neuronscope.config import Settings
from neuronscope.storage.files import atomic_write_json


def starter_samples() -> list[str]:
    """The starter prompts shipped with the package."""
    text = resources.files("neuronscope.resources").joinpath("starter_samples.json").read_text("utf-8")
    return json.loads(text)


class SampleService:
    def __init__(self, settings: Settings):
        self.path: Path = settings.data_dir / "samples.json"
        self._lock = threading.Lock()

    def list(self) -> list[str]:
        """The stored prompts (the starter set until the first one is added)."""
        if not self.path.is_file():
            return starter_samples()
        with open(self.path, encoding="utf-8") as handle:
            return json.load(handle)

    def add(self, prompt: str) -> tuple[str, bool]:
        """Store ``prompt`` unless already present; returns (prompt, whether it was added)."""
        prompt = prompt.strip()
        with self._lock:
            samples = self.list()
            if prompt in samples:
                return prompt, False
            atomic_write_json(self.path, [*samples, prompt], indent=2)
            return prompt, True
