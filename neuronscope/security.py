"""Request guards run before every view: header size, Host header, cross-site form posts, API key,
rate limits of expensive routes."""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict, deque
from typing import Mapping
from urllib.parse import urlsplit

from flask import Flask, request

from neuronscope.config import Settings
from neuronscope.errors import Forbidden, HeadersTooLarge, TooManyRequests, Unauthorized

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
OPEN_PATHS = ("/api/health",)
CHEAP_POSTS = ("/api/samples",)
UNKNOWN_ROUTE = "<no route>"
"""The one rate-limit key of every path that matches no route (so unique paths add no keys)."""
MAX_TRACKED_KEYS = 10_000
"""(client, route) pairs the rate limiter remembers; the least recently seen are forgotten first."""
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain")
"""Bodies a page on any site can POST here without a CORS preflight (an HTML form can send them)."""
CROSS_SITE_FETCHES = ("cross-site", "same-site")


def counted_method(method: str) -> str:
    """``HEAD`` runs the ``GET`` view, so it is counted as ``GET``."""
    return "GET" if method == "HEAD" else method


def is_expensive(method: str, path: str) -> bool:
    """Analyses and model loads: every API POST but samples, and the GET pruning analyses."""
    method = counted_method(method)
    if not path.startswith("/api/"):
        return False
    if method == "POST":
        return path not in CHEAP_POSTS
    return method == "GET" and path.startswith("/api/pruning/")


class RateLimiter:
    """Sliding one-minute window per (client, route template), shared by the app's threads.

    At most ``max_keys`` windows are kept (least recently used dropped first), so the memory
    stays bounded whatever paths and clients arrive.
    """

    def __init__(self, per_minute: int, max_keys: int = MAX_TRACKED_KEYS):
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._hits: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._hits)

    def check(self, client: str, route: str) -> None:
        """Record one hit; raise 429 with ``Retry-After`` when over the limit."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault((client, route), deque())
            self._hits.move_to_end((client, route))
            while len(self._hits) > self.max_keys:
                self._hits.popitem(last=False)
            while hits and now - hits[0] >= 60.0:
                hits.popleft()
            if len(hits) >= self.per_minute:
                retry = max(1, int(60.0 - (now - hits[0])) + 1)
                raise TooManyRequests(
                    f"more than {self.per_minute} requests a minute to {route}; retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )
            hits.append(now)


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):
        return host_header.split("]")[0] + "]"
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _origin_host(origin: str) -> str:
    """The ``host[:port]`` of an ``Origin`` header; empty for ``null`` or one that does not parse."""
    try:
        return urlsplit(origin).netloc.lower()
    except ValueError:
        return ""


def is_cross_site(headers: Mapping[str, str], host: str, cors_origins: tuple[str, ...]) -> bool:
    """Whether a browser sent the request from a page of another origin: ``Sec-Fetch-Site`` is
    ``cross-site`` or ``same-site``, or the ``Origin``'s host:port is not the ``Host``. Requests
    without these headers (curl, scripts) are not; nor those from an origin CORS is opened to."""
    origin = headers.get("Origin")
    if origin is not None and (cors_origins == ("*",) or origin in cors_origins):
        return False
    if headers.get("Sec-Fetch-Site", "").lower() in CROSS_SITE_FETCHES:
        return True
    return origin is not None and _origin_host(origin) != host.lower()


def allowed_hosts(settings: Settings) -> tuple[str, ...] | None:
    """Host names accepted in the Host header; ``None`` = any (bound to a non-loopback address)."""
    if settings.host not in LOOPBACK_NAMES and not settings.allowed_hosts:
        return None
    base = LOOPBACK_NAMES if settings.host in LOOPBACK_NAMES else ()
    return tuple(h.lower() for h in (*base, *settings.allowed_hosts))


def header_bytes(environ: dict) -> int:
    """Bytes of the request line's path and query and of every header (name and value)."""
    size = len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", ""))
    return size + sum(len(key) + len(str(value)) for key, value in environ.items() if key.startswith("HTTP_"))


def rate_key(method: str, rule: object | None) -> str:
    """``"GET /api/models/<model_name:model_name>"``: the method and the route template, never the raw path."""
    return f"{counted_method(method)} {rule if rule is not None else UNKNOWN_ROUTE}"


def install_guards(app: Flask, settings: Settings) -> None:
    """Register the guards as ``before_request`` hooks on ``app``."""
    hosts = allowed_hosts(settings)
    limiter = RateLimiter(settings.rate_limit_per_minute) if settings.rate_limit_per_minute > 0 else None
    app.extensions["neuronscope_rate_limiter"] = limiter

    @app.before_request
    def _guard() -> None:
        if header_bytes(request.environ) > settings.max_header_bytes:
            raise HeadersTooLarge(f"the request line and headers exceed {settings.max_header_bytes} bytes")
        if request.method == "OPTIONS":
            return
        if hosts is not None and _host_name(request.host.lower()) not in hosts:
            raise Forbidden(
                f"Host {request.host!r} is not allowed (DNS-rebinding protection); "
                "add it to NEURONSCOPE_ALLOWED_HOSTS"
            )
        if request.method == "POST" and request.mimetype in FORM_TYPES and is_cross_site(
            request.headers, request.host, settings.cors_origins
        ):
            raise Forbidden(
                "a form posted from a page of another site is refused (cross-site request forgery protection); "
                "post it from this server's own page, or from a script"
            )
        if settings.api_key and request.path.startswith("/api/") and request.path not in OPEN_PATHS:
            given = request.headers.get("X-API-Key", "")
            if not hmac.compare_digest(given.encode(), settings.api_key.encode()):
                raise Unauthorized("send the API key in the 'X-API-Key' header")
        if limiter is not None and is_expensive(request.method, request.path):
            limiter.check(request.remote_addr or "?", rate_key(request.method, request.url_rule))
