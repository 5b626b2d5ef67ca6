"""The one timestamp format of responses and result files: ISO 8601 UTC with milliseconds."""

from __future__ import annotations

import time
from datetime import datetime, timezone


def utc_now(timestamp: float | None = None) -> str:
    """``timestamp`` (seconds since the epoch; now when omitted) as ISO 8601 UTC, e.g.
    ``2025-01-31T12:00:00.000Z``."""
    moment = datetime.fromtimestamp(time.time() if timestamp is None else timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
