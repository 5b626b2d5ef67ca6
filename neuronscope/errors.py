"""Domain exceptions and the one JSON error shape: ``{"error": ..., "details": ...}``."""

from __future__ import annotations

import errno
import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class NeuronScopeError(Exception):
    """Base of every error a client may see. ``status`` is the HTTP status code."""

    status = 500
    error = "Internal server error"

    def __init__(self, details: str, *, error: str | None = None, headers: dict | None = None):
        super().__init__(details)
        self.details = details
        if error is not None:
            self.error = error
        self.headers = headers or {}


class BadRequest(NeuronScopeError):
    status = 400
    error = "Bad request"


class Unauthorized(NeuronScopeError):
    status = 401
    error = "Unauthorized"


class Forbidden(NeuronScopeError):
    status = 403
    error = "Forbidden"


class NotFound(NeuronScopeError):
    status = 404
    error = "Not found"


class Conflict(NeuronScopeError):
    status = 409
    error = "Conflict"


class UnsupportedMediaType(NeuronScopeError):
    status = 415
    error = "Unsupported media type"


class HeadersTooLarge(NeuronScopeError):
    status = 431
    error = "Request header fields too large"


class InsufficientStorage(NeuronScopeError):
    """A write would exceed the server's storage quota (saved models, bytes under data/)."""

    status = 507
    error = "Insufficient storage"


class ModelUnavailable(NeuronScopeError):
    """The requested model cannot be loaded (offline, missing files, unsupported)."""

    status = 503
    error = "Model unavailable"


class CorpusUnavailable(NeuronScopeError):
    """A corpus cannot be built (the package it is read from is not installed)."""

    status = 503
    error = "Corpus unavailable"


class ExecutorUnavailable(NeuronScopeError):
    """The configured executor (Ray) cannot be started or joined, or keeps losing its workers."""

    status = 503
    error = "Executor unavailable"


class UnsupportedArchitecture(NeuronScopeError):
    status = 400
    error = "Unsupported architecture"


class TooManyRequests(NeuronScopeError):
    status = 429
    error = "Too many requests"


class ServiceBusy(NeuronScopeError):
    status = 503
    error = "Server busy"


_DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})


def error_response(status: int, error: str, details: str, headers: dict | None = None):
    response = jsonify({"error": error, "details": details})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def register_error_handlers(app: Flask) -> None:
    """Map domain exceptions, HTTP errors and anything unexpected to JSON."""

    @app.errorhandler(NeuronScopeError)
    def _domain(exc: NeuronScopeError):
        return error_response(exc.status, exc.error, exc.details, exc.headers)

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        headers = {}
        if exc.code == 405 and exc.valid_methods:
            headers["Allow"] = ", ".join(exc.valid_methods)
        return error_response(exc.code or 500, exc.name, exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            log.error("a write failed: %s", exc)
            return error_response(507, InsufficientStorage.error, "the server's disk is full; nothing was changed")
        log.exception("unhandled error")
        return error_response(500, "Internal server error", "The server failed to handle the request; see its log.")
