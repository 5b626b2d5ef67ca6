"""Parsing and validating request input; every failure is a 4xx with a clear message.

Every body and query string passes :func:`check_values` first: anywhere in it, numbers must be
finite and integers within ``±MAX_INT``, and strings (keys included) valid Unicode without control
characters (:func:`neuronscope.services.validation.text_problem`). Fields then check their own
types and ranges.
"""

from __future__ import annotations

import math
from typing import Any

from flask import request
from werkzeug.exceptions import BadRequest as UnreadableJson

from neuronscope.errors import BadRequest, UnsupportedMediaType
from neuronscope.services.validation import text_problem

MISSING = object()
MAX_INT = 2**63 - 1
"""The largest integer accepted anywhere (a signed 64-bit integer, what tensors index with)."""


def check_values(value: Any, where: str = "the request") -> None:
    """400 unless every number inside ``value`` is finite and every integer within ``±MAX_INT``,
    and every string (and key) is valid Unicode without control characters."""
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, dict):
            for key, child in item.items():
                _check_string(key, f"a key of {path}")
                stack.append((child, f"{path}.{key}" if path != where else key))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(item))
        elif isinstance(item, str):
            _check_string(item, f"'{path}'")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int) and abs(item) > MAX_INT:
            raise BadRequest(f"'{path}' is an integer beyond the limit of ±{MAX_INT}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise BadRequest(f"'{path}' must be a finite number, got {item}")


def _check_string(text: str, what: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        raise BadRequest(f"{what} {problem}; text must be valid Unicode without control characters")


def json_body() -> dict[str, Any]:
    """The request body as a JSON object (415 when not JSON, 400 when malformed or not an object)."""
    if not request.is_json:
        raise UnsupportedMediaType("send a JSON object with 'Content-Type: application/json'")
    try:
        data = request.get_json()
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply") from None
    except UnreadableJson:
        raise BadRequest("the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    check_values(data)
    return data


def _fetch(source: dict, key: str, default: Any) -> Any:
    value = source.get(key, MISSING)
    if value is MISSING or value is None:
        if default is MISSING:
            raise BadRequest(f"'{key}' is required")
        return default
    return value


def _check_range(key: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise BadRequest(f"'{key}' must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise BadRequest(f"'{key}' must be <= {maximum}, got {value}")


def get_int(source: dict, key: str, default: Any = MISSING, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer field (booleans and floats refused)."""
    value = _fetch(source, key, default)
    if value is default and default is not MISSING:
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"'{key}' must be an integer")
    if abs(value) > MAX_INT:
        raise BadRequest(f"'{key}' is an integer beyond the limit of ±{MAX_INT}")
    _check_range(key, value, minimum, maximum)
    return value


_JSON_TYPES = {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}


def get_float(source: dict, key: str, default: Any = MISSING, *, minimum: float | None = None, maximum: float | None = None) -> float:
    """A finite number field."""
    value = _fetch(source, key, default)
    if value is default and default is not MISSING:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"'{key}' must be a number, got {_JSON_TYPES.get(type(value), 'a value')} {value!r:.40}")
    if abs(value) > MAX_INT or not math.isfinite(value):
        raise BadRequest(f"'{key}' must be a finite number of at most {MAX_INT:.3g} in size")
    _check_range(key, value, minimum, maximum)
    return float(value)


def get_bool(source: dict, key: str, default: Any = MISSING) -> bool:
    value = _fetch(source, key, default)
    if not isinstance(value, bool):
        raise BadRequest(f"'{key}' must be true or false")
    return value


def get_str(source: dict, key: str, default: Any = MISSING, *, max_chars: int | None = None, choices: tuple[str, ...] | None = None) -> str:
    """A non-empty string field (after stripping whitespace)."""
    value = _fetch(source, key, default)
    if value is default and default is not MISSING:
        return value
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"'{key}' must be a non-empty string")
    if max_chars is not None and len(value) > max_chars:
        raise BadRequest(f"'{key}' is longer than the limit of {max_chars} characters")
    if choices is not None and value not in choices:
        raise BadRequest(f"'{key}' must be one of {', '.join(choices)}; got {value!r}")
    return value


def get_list(source: dict, key: str, default: Any = MISSING, *, max_items: int | None = None) -> list:
    """A non-empty list field of at most ``max_items`` items."""
    value = _fetch(source, key, default)
    if value is default and default is not MISSING:
        return value
    if not isinstance(value, list) or not value:
        raise BadRequest(f"'{key}' must be a non-empty list")
    if max_items is not None and len(value) > max_items:
        raise BadRequest(f"'{key}' has {len(value)} items; the limit is {max_items}")
    return value


def get_str_list(source: dict, key: str, default: Any = MISSING, *, max_items: int | None = None, max_chars: int | None = None) -> list[str]:
    """A non-empty list of non-empty strings."""
    values = get_list(source, key, default, max_items=max_items)
    if values is default and default is not MISSING:
        return values
    for i, item in enumerate(values):
        if not isinstance(item, str) or not item.strip():
            raise BadRequest(f"'{key}[{i}]' must be a non-empty string")
        if max_chars is not None and len(item) > max_chars:
            raise BadRequest(f"'{key}[{i}]' is longer than the limit of {max_chars} characters")
    return values


def get_int_list(source: dict, key: str, default: Any = MISSING, *, max_items: int | None = None, unique: bool = True) -> list[int]:
    """A non-empty list of integers, unique unless ``unique=False``."""
    values = get_list(source, key, default, max_items=max_items)
    if values is default and default is not MISSING:
        return values
    for i, item in enumerate(values):
        if isinstance(item, bool) or not isinstance(item, int):
            raise BadRequest(f"'{key}[{i}]' must be an integer")
    if unique and len(set(values)) != len(values):
        raise BadRequest(f"'{key}' must not repeat values")
    return values


def form_fields() -> dict[str, Any]:
    """The text fields of a ``multipart/form-data`` body (415 for another content type), checked as a JSON body is."""
    if request.mimetype != "multipart/form-data":
        raise UnsupportedMediaType("send the upload as multipart/form-data")
    fields = request.form.to_dict()
    check_values(fields, "the form")
    return fields


def uploaded_file(key: str) -> tuple[str, bytes]:
    """The plain file name and the bytes of the multipart part ``key`` (400 when absent or when its
    name is not a plain file name)."""
    upload = request.files.get(key)
    if upload is None or not upload.filename:
        raise BadRequest(f"the multipart body needs a '{key}' part with a file name")
    name = upload.filename
    if "/" in name or "\\" in name or name.startswith(".") or "\x00" in name:
        raise BadRequest(f"{name!r} is not a plain file name")
    return name, upload.read()
