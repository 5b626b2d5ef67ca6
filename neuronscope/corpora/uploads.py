"""Parsing an uploaded corpus file: ``.txt`` (one text per blank-line-separated paragraph) or
``.jsonl`` (one ``{"text": ...}`` object per line). Anything invalid is a 400."""

from __future__ import annotations

import json
import re

from neuronscope.errors import BadRequest

UPLOAD_SUFFIXES = (".txt", ".jsonl")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the file is not valid UTF-8 (byte {exc.start})") from exc


def _checked_text(text: str, where: str) -> str:
    """``text`` if it encodes to UTF-8 (no lone surrogates, as JSON escapes can make), else 400."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BadRequest(f"{where} holds a lone surrogate at character {exc.start}") from exc
    return text


def _jsonl_texts(content: str) -> list[str]:
    texts = []
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"line {number} is not JSON: {exc.msg}") from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise BadRequest(f'line {number} must be an object with a string "text"')
        texts.append(_checked_text(record["text"], f"line {number}"))
    return texts


def parse_upload(filename: str, data: bytes) -> list[str]:
    """The non-empty texts of an uploaded file, in order; 400 for a bad suffix, encoding or content."""
    suffix = next((s for s in UPLOAD_SUFFIXES if filename.lower().endswith(s)), None)
    if suffix is None:
        raise BadRequest(f"upload a {' or '.join(UPLOAD_SUFFIXES)} file, not {filename!r}")
    content = _decoded(data)
    texts = _jsonl_texts(content) if suffix == ".jsonl" else _BLANK_LINE.split(content)
    texts = [text.strip() for text in texts if text.strip()]
    if not texts:
        raise BadRequest("the file holds no text")
    return texts
