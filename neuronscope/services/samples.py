"""Sample prompts: a starter set, persisted under the data directory with atomic writes.

Only valid prompts are stored (non-empty Unicode text without control characters, within
``max_sample_chars``), and stored entries that are not are skipped on reading, with a log line, so
a sample file written by hand or by an older version can never break a later request.
"""

from __future__ import annotations

import json
import logging
import threading
from importlib import resources
from pathlib import Path

from neuronscope.config import Settings
from neuronscope.errors import BadRequest, NotFound
from neuronscope.modeling.manager import LoadedModel
from neuronscope.services.validation import text_problem, token_count, token_limit
from neuronscope.storage.files import atomic_write_json

log = logging.getLogger(__name__)


def starter_samples() -> list[str]:
    """The starter prompts shipped with the package."""
    text = resources.files("neuronscope.resources").joinpath("starter_samples.json").read_text("utf-8")
    return json.loads(text)


class SampleService:
    def __init__(self, settings: Settings):
        self.path: Path = settings.data_dir / "samples.json"
        self.max_chars = settings.max_sample_chars
        self._lock = threading.Lock()

    def problem(self, prompt: object) -> str | None:
        """Why ``prompt`` cannot be a sample, or None."""
        if not isinstance(prompt, str) or not prompt.strip():
            return "is not a non-empty string"
        if len(prompt) > self.max_chars:
            return f"is longer than the limit of {self.max_chars} characters"
        return text_problem(prompt)

    def list(self) -> list[str]:
        """The stored prompts (the starter set until the first one is added), invalid entries skipped."""
        if not self.path.is_file():
            return starter_samples()
        try:
            with open(self.path, encoding="utf-8") as handle:
                stored = json.load(handle)
        except (OSError, ValueError) as exc:
            log.error("ignoring %s: it is not readable JSON (%s)", self.path, exc)
            return []
        if not isinstance(stored, list):
            log.error("ignoring %s: it holds no list of prompts", self.path)
            return []
        samples = []
        for i, prompt in enumerate(stored):
            problem = self.problem(prompt)
            if problem is None:
                samples.append(prompt)
            else:
                log.warning("skipping stored sample %d of %s: it %s", i, self.path, problem)
        return samples

    def fitting(self, lm: LoadedModel, max_tokens: int) -> list[str]:
        """The stored prompts that fit ``lm``'s token limit; the others (stored for another model, or
        before the limit was lowered) are skipped with a log line instead of failing the request."""
        limit, name = token_limit(lm, max_tokens)
        fitting = []
        for prompt in self.list():
            count = token_count(lm, prompt)
            if 0 < count <= limit:
                fitting.append(prompt)
            else:
                log.warning("skipping a stored sample of %d tokens for %s: the limit is %d (%s)", count, lm.name, limit, name)
        return fitting

    def add(self, prompt: str) -> tuple[str, bool]:
        """Store ``prompt`` unless already present; returns (prompt, whether it was added)."""
        prompt = prompt.strip()
        problem = self.problem(prompt)
        if problem is not None:
            raise BadRequest(f"the prompt {problem}")
        with self._lock:
            samples = self.list()
            if prompt in samples:
                return prompt, False
            atomic_write_json(self.path, [*samples, prompt], indent=2)
            return prompt, True

    def delete(self, *, index: int | None = None, prompt: str | None = None) -> str:
        """Remove the sample at ``index`` (as listed) or the one equal to ``prompt``; returns it (404 when absent)."""
        with self._lock:
            samples = self.list()
            if index is not None and not 0 <= index < len(samples):
                raise NotFound(f"there is no sample {index}: there are {len(samples)} (indices 0..{len(samples) - 1})")
            if prompt is not None:
                prompt = prompt.strip()
                if prompt not in samples:
                    raise NotFound("no stored sample equals that prompt")
                index = samples.index(prompt)
            removed = samples.pop(index)
            atomic_write_json(self.path, samples, indent=2)
            return removed
