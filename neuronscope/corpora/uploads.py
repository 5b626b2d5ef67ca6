"""Parsing an uploaded corpus file: ``.txt`` (one text per blank-line-separated paragraph) or
``.jsonl`` (one ``{"text": ...}`` object per line). Anything invalid is a 400, naming the line;
texts obey the rule of every text that enters the server (valid Unicode without control
characters other than tab, LF and CR: :func:`~neuronscope.services.validation.text_problem`)."""

from __future__ import annotations

import json
import re
import sys

from neuronscope.errors import BadRequest
from neuronscope.services.validation import text_problem

UPLOAD_SUFFIXES = (".txt", ".jsonl")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")


def _decoded(data: bytes) -> str:
    try:
        return data.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        raise BadRequest(f"the file is not valid UTF-8 (byte {exc.start})") from exc


def _checked_text(text: str, where: str) -> str:
    """``text`` if it is valid Unicode without control characters other than tab, LF and CR, else 400."""
    problem = text_problem(text)
    if problem is not None:
        raise BadRequest(f"{where} {problem}; text must be valid Unicode without control characters")
    return text


def _txt_texts(content: str) -> list[str]:
    """The blank-line-separated paragraphs of ``content``, each line checked first."""
    for number, line in enumerate(content.split("\n"), start=1):
        _checked_text(line, f"line {number}")
    return _BLANK_LINE.split(content)


def _json_line(line: str, number: int) -> object:
    """The JSON value of line ``number``; 400 when it is not JSON or cannot be read (nested too
    deeply for the parser, an integer over Python's digit limit)."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"line {number} is not JSON: {exc.msg}") from exc
    except RecursionError:
        raise BadRequest(f"line {number} is JSON nested too deeply") from None
    except ValueError:
        raise BadRequest(f"line {number} holds an integer of over {sys.get_int_max_str_digits()} digits") from None


def _jsonl_texts(content: str) -> list[str]:
    texts = []
    for number, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        record = _json_line(line, number)
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise BadRequest(f'line {number} must be an object with a string "text"')
        texts.append(_checked_text(record["text"], f'the "text" of line {number}'))
    return texts


def parse_upload(filename: str, data: bytes) -> list[str]:
    """The non-empty texts of an uploaded file, in order; 400 for a bad suffix, encoding or content."""
    suffix = next((s for s in UPLOAD_SUFFIXES if filename.lower().endswith(s)), None)
    if suffix is None:
        raise BadRequest(f"upload a {' or '.join(UPLOAD_SUFFIXES)} file, not {filename!r}")
    content = _decoded(data)
    texts = _jsonl_texts(content) if suffix == ".jsonl" else _txt_texts(content)
    texts = [text.strip() for text in texts if text.strip()]
    if not texts:
        raise BadRequest("the file holds no text")
    return texts
