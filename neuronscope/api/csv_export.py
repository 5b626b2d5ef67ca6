"""``?format=csv``: a response's table as CSV (``text/csv`` with a ``Content-Disposition`` file name)."""

from __future__ import annotations

import csv
import io
from typing import Any, Callable, Iterable, Mapping

from flask import Response, request

from neuronscope.errors import BadRequest

FORMATS = ("json", "csv")
Table = Callable[[dict, Mapping[str, Any]], tuple[Iterable[dict], str]]
"""A route's table: ``(body, path arguments) -> (rows, file name)`` for ``?format=csv``."""
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def wants_csv() -> bool:
    """Whether the request asks for ``?format=csv`` (400 for an unknown format)."""
    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt == "csv"


def _cell(value: Any) -> Any:
    """A cell; text that a spreadsheet would run as a formula is prefixed with a quote (numbers stay as they are)."""
    if isinstance(value, (list, tuple)):
        value = " ".join(str(v) for v in value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_response(rows: Iterable[dict], filename: str, headers: Mapping[str, str] | None = None) -> Response:
    """``rows`` (dicts with the same keys) as a CSV attachment named ``filename`` (with ``headers``)."""
    rows = list(rows)
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({key: _cell(value) for key, value in row.items()} for row in rows)
    return Response(
        buffer.getvalue(), mimetype="text/csv",
        headers={**(headers or {}), "Content-Disposition": f'attachment; filename="{filename}"'},
    )
