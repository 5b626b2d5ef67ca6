"""Declarative request fields: a typed request is a frozen dataclass whose fields say how to parse them.

Each field helper (:func:`integer`, :func:`number`, :func:`text`, ...) returns a dataclass field
carrying a :class:`Spec`: how to read the value from a JSON body (or query arguments) with the 400
messages of :mod:`neuronscope.api.params`, and its JSON schema (compared with docs/openapi.yaml by
tests/api/test_request_schemas.py). Limits given as a string name a :class:`~neuronscope.config.Settings`
field (``max_items="max_texts"``), read when the request is parsed.

A missing field or a JSON ``null`` takes the default; fields without a default are required.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Sequence, TypeVar

from werkzeug.datastructures import MultiDict

from neuronscope.api import params
from neuronscope.config import Settings
from neuronscope.errors import BadRequest

REQUIRED = dataclasses.MISSING
Limit = int | float | str | None
Reader = Callable[[dict, str, Settings, "Spec"], Any]


@dataclass(frozen=True)
class Spec:
    """How one request field is read and described."""

    read: Reader
    schema: dict
    kind: str
    default: Any = REQUIRED
    minimum: Limit = None
    maximum: Limit = None
    max_items: Limit = None
    max_chars: Limit = None
    choices: tuple | None = None
    is_text: bool = False
    dump: Callable[[Any], Any] | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def limit(self, name: str, settings: Settings) -> Any:
        value = getattr(self, name)
        return getattr(settings, value) if isinstance(value, str) else value

    def default_arg(self) -> Any:
        return params.MISSING if self.required else self.default


def _field(spec: Spec) -> Any:
    metadata = {"spec": spec}
    if spec.required:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=spec.default, metadata=metadata)


def _static(schema: dict, **limits: Limit) -> dict:
    """``schema`` with the limits that are numbers (settings-dependent ones are documented in prose)."""
    return {**schema, **{k: v for k, v in limits.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}}


def integer(*, default: Any = REQUIRED, minimum: Limit = None, maximum: Limit = None) -> Any:
    """A JSON integer (not a boolean, not ``1.0``) within ``[minimum, maximum]``."""

    def read(source: dict, key: str, settings: Settings, spec: Spec) -> int:
        return params.get_int(
            source, key, spec.default_arg(), minimum=spec.limit("minimum", settings), maximum=spec.limit("maximum", settings)
        )

    return _field(Spec(read, _static({"type": "integer"}, minimum=minimum, maximum=maximum), "integer", default, minimum, maximum))


def number(*, default: Any = REQUIRED, minimum: Limit = None, maximum: Limit = None) -> Any:
    """A finite JSON number within ``[minimum, maximum]``."""

    def read(source: dict, key: str, settings: Settings, spec: Spec) -> float:
        return params.get_float(
            source, key, spec.default_arg(), minimum=spec.limit("minimum", settings), maximum=spec.limit("maximum", settings)
        )

    return _field(Spec(read, _static({"type": "number"}, minimum=minimum, maximum=maximum), "number", default, minimum, maximum))


def boolean(*, default: Any = REQUIRED) -> Any:
    def read(source: dict, key: str, settings: Settings, spec: Spec) -> bool:
        return params.get_bool(source, key, spec.default_arg())

    return _field(Spec(read, {"type": "boolean"}, "boolean", default))


def string(*, default: Any = REQUIRED, max_chars: Limit = None, choices: Sequence[str] | None = None) -> Any:
    """A non-empty string: a name, or one of ``choices``."""
    options = tuple(choices) if choices is not None else None

    def read(source: dict, key: str, settings: Settings, spec: Spec) -> str:
        return params.get_str(source, key, spec.default_arg(), max_chars=spec.limit("max_chars", settings), choices=options)

    schema = {"type": "string", "enum": list(options)} if options else _static({"type": "string"}, maxLength=max_chars)
    return _field(Spec(read, schema, "string", default, max_chars=max_chars, choices=options))


def choice(options: Sequence[str], *, default: Any = REQUIRED) -> Any:
    return string(default=default, choices=options)


def text(*, default: Any = REQUIRED, max_chars: Limit = None) -> Any:
    """A free text the model will read: counted against the token limit when a model is loaded."""

    def read(source: dict, key: str, settings: Settings, spec: Spec) -> str:
        return params.get_str(source, key, spec.default_arg(), max_chars=spec.limit("max_chars", settings))

    schema = _static({"type": "string", "minLength": 1}, maxLength=max_chars)
    return _field(Spec(read, schema, "string", default, max_chars=max_chars, is_text=True))


def texts(*, default: Any = REQUIRED, max_items: Limit = None) -> Any:
    """A non-empty list of free texts (a tuple once parsed)."""

    def read(source: dict, key: str, settings: Settings, spec: Spec) -> tuple[str, ...] | None:
        values = params.get_str_list(source, key, spec.default_arg(), max_items=spec.limit("max_items", settings))
        return tuple(values) if isinstance(values, list) else values

    schema = {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}
    return _field(Spec(read, schema, "strings", default, max_items=max_items, is_text=True))


def integers(*, default: Any = REQUIRED, max_items: Limit = None, minimum: int | None = None) -> Any:
    """A non-empty list of unique integers, each >= ``minimum`` (a tuple once parsed)."""

    def read(source: dict, key: str, settings: Settings, spec: Spec) -> tuple[int, ...] | None:
        values = params.get_int_list(source, key, spec.default_arg(), max_items=spec.limit("max_items", settings))
        if not isinstance(values, list):
            return values
        if minimum is not None and min(values) < minimum:
            raise BadRequest(f"'{key}' must hold integers >= {minimum}")
        return tuple(values)

    items = _static({"type": "integer"}, minimum=minimum)
    schema = _static({"type": "array", "minItems": 1, "uniqueItems": True, "items": items}, maxItems=max_items)
    return _field(Spec(read, schema, "integers", default, max_items=max_items, minimum=minimum))


def custom(
    read: Callable[[dict, str, Settings], Any],
    schema: dict,
    *,
    default: Any = REQUIRED,
    dump: Callable[[Any], Any] | None = None,
) -> Any:
    """A field with its own reader ``read(source, key, settings)`` (absent or null: ``default``) and,
    when its parsed value is not already in API shape, ``dump(value)`` for :meth:`Request.as_body`."""

    def reader(source: dict, key: str, settings: Settings, spec: Spec) -> Any:
        if source.get(key) is None:
            if spec.required:
                raise BadRequest(f"'{key}' is required")
            return spec.default
        return read(source, key, settings)

    return _field(Spec(reader, schema, "json", default, dump=dump))


R = TypeVar("R", bound="Request")


@dataclass(frozen=True, kw_only=True)
class Request:
    """Base of every typed request: parse once with :meth:`parse`, describe with :meth:`as_body`."""

    content_type: ClassVar[str] = "application/json"
    """How a POST body arrives: a JSON object, or ``multipart/form-data`` (an upload's form fields)."""

    @classmethod
    def specs(cls) -> Iterator[tuple[str, Spec]]:
        for item in dataclasses.fields(cls):
            yield item.name, item.metadata["spec"]

    @classmethod
    def field_names(cls) -> list[str]:
        return [name for name, _ in cls.specs()]

    @classmethod
    def from_body(cls) -> dict:
        """The POST body this request reads: the JSON object, or an upload's form fields."""
        return params.json_body() if cls.content_type == "application/json" else params.form_fields()

    @classmethod
    def parse(cls: type[R], source: dict, settings: Settings) -> R:
        """The request in ``source`` (a JSON body or query arguments); 400 with a clear message otherwise."""
        request = cls(**{name: spec.read(source, name, settings, spec) for name, spec in cls.specs()})
        request.check(settings)
        return request

    @classmethod
    def from_query(cls, args: MultiDict) -> dict:
        """The query arguments this request declares, as JSON values: integers, numbers and booleans
        parsed where they are written as JSON writes them (the fields refuse the rest with their
        messages); a list field takes repeated keys and comma-separated values (``?layer=0&layer=3``
        or ``?layer=0,3``), duplicates dropped; any other field given twice is a 400."""
        source: dict[str, Any] = {}
        for name, spec in cls.specs():
            if name not in args:
                continue
            if spec.kind == "integers":
                parts = [part for value in args.getlist(name) for part in value.split(",")]
                source[name] = list(dict.fromkeys(query_scalar(part, "integer") for part in parts))
            else:
                source[name] = query_scalar(single_argument(args, name), spec.kind)
        params.check_values(source, "the query string")
        return source

    def check(self, settings: Settings) -> None:
        """Checks across fields (400); none by default."""

    def as_body(self) -> dict:
        """The request in API names as a JSON object: job ``params``, exports and cache keys."""
        body = {}
        for name, spec in self.specs():
            value = getattr(self, name)
            body[name] = _jsonable(spec.dump(value) if spec.dump is not None and value is not None else value)
        return body

    def check_model(self, lm: Any) -> None:
        """Checks against the loaded model ``lm`` (400: layers and neurons in range), made before a
        synchronous call's work is estimated, so a request that is both wrong and too large is told
        what is wrong; none by default (the services check again as they work)."""

    def forward_tokens(self, lm: Any, svc: Any) -> int:
        """Tokens the model will run forward passes over (ablations x tokens, ...) on ``lm``: the
        estimate a synchronous call is budgeted by (docs/jobs.md); 0 for cheap requests."""
        return 0

    def free_texts(self) -> list[str]:
        """Every free text of the request (checked against the model's token limit at the door)."""
        found: list[str] = []
        for name, spec in self.specs():
            value = getattr(self, name)
            if spec.is_text and value is not None:
                found.extend([value] if isinstance(value, str) else value)
        return found

    @classmethod
    def json_schema(cls) -> dict:
        """The JSON schema of the body (or query arguments): properties, required names."""
        properties = {name: spec.schema for name, spec in cls.specs()}
        required = [name for name, spec in cls.specs() if spec.required]
        return {"type": "object", "properties": properties, **({"required": required} if required else {})}


@dataclass(frozen=True, kw_only=True)
class NoFields(Request):
    """The request of a route that reads nothing from the body or the query string."""


MAX_DIGITS = 4000
"""Longest integer parsed from a query string (Python refuses to parse much longer ones); a longer
one is left as text, which the field refuses."""
_INTEGER = re.compile(r"-?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", re.ASCII)


def single_argument(args: MultiDict, name: str) -> str:
    """The one value of query argument ``name`` (400 when it is given more than once)."""
    values = args.getlist(name)
    if len(values) > 1:
        raise BadRequest(f"'{name}' is given {len(values)} times in the query string; give it once")
    return values[0] if values else ""


def query_scalar(raw: str, kind: str) -> Any:
    """``raw`` as the JSON value a field of ``kind`` expects, when it is written as JSON writes one
    (``3``, ``-2``, ``0.5``, ``1e-3``, ``true``; no spaces, signs, digit separators or non-ASCII
    digits), or unchanged, for the field to refuse."""
    if kind == "boolean" and raw.lower() in {"true", "false"}:
        return raw.lower() == "true"
    if kind in ("integer", "number") and _INTEGER.fullmatch(raw) and len(raw) <= MAX_DIGITS:
        return int(raw)
    if kind == "number" and _NUMBER.fullmatch(raw):
        return float(raw)
    return raw


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    return value
