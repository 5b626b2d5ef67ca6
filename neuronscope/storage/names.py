"""Safe, readable file names derived from user text."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def slugify(text: str, max_chars: int = 40, fallback: str = "item") -> str:
    """Lower-case ASCII letters and digits of ``text`` joined by ``-`` (``fallback`` when none remain)."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return _NOT_SLUG.sub("-", ascii_text.lower()).strip("-")[:max_chars].strip("-") or fallback


def short_hash(*parts: str, length: int = 12) -> str:
    """The first ``length`` hex digits of the SHA-256 of ``parts`` (NUL-separated)."""
    return hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()[:length]


def activation_filename(prompt: str, model_name: str) -> str:
    """``<slug>-<hash>.json``: a readable slug of ``prompt`` and a short hash of (model, prompt).

    The same prompt on the same model always gets the same name; different prompts or models
    get different names even when their slugs agree.
    """
    return f"{slugify(prompt, fallback='prompt')}-{short_hash(model_name, prompt)}.json"
