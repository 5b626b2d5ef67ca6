"""Timestamps written into result files."""

from datetime import datetime, timezone


def utc_now() -> str:
    """The current time as ISO 8601 UTC, e.g. ``2025-01-31T12:00:00Z``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
