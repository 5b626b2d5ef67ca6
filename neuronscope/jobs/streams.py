"""Bounded event streams: at most ``limit`` open at once, each with a maximum lifetime.

An open stream holds one WSGI worker thread for as long as it lasts, so streams must never be
able to take every thread: the limit stays below the thread count (see
``Settings.event_stream_limit``), one more stream is refused with 503, keep-alive comments find
clients that went away (the write fails and the server closes the stream), and each stream ends
after its lifetime (clients reconnect).
"""

from __future__ import annotations

import threading
from typing import Callable, Iterator

from neuronscope.errors import ServiceBusy

RETRY_AFTER_S = 5


class EventStream:
    """One open stream: iterates ``events`` and gives its slot back exactly once when closed
    (the WSGI server closes it at the end, after a failed write, or when it never started)."""

    def __init__(self, events: Iterator[str], release: Callable[[], None]):
        self._events = events
        self._release: Callable[[], None] | None = release
        self._lock = threading.Lock()

    def __iter__(self) -> "EventStream":
        return self

    def __next__(self) -> str:
        return next(self._events)

    def close(self) -> None:
        with self._lock:
            release, self._release = self._release, None
        if release is None:
            return
        try:
            close = getattr(self._events, "close", None)
            if close is not None:
                close()
        finally:
            release()


class EventStreams:
    """The slots of one app's event streams."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open = 0
        self._lock = threading.Lock()

    @property
    def open_count(self) -> int:
        return self._open

    def open(self, events: Iterator[str]) -> EventStream:
        """Wrap ``events`` in a stream holding one slot; 503 with ``Retry-After`` when none is free."""
        with self._lock:
            if self._open >= self.limit:
                raise ServiceBusy(
                    f"{self.limit} event streams are already open (NEURONSCOPE_MAX_EVENT_STREAMS); "
                    "poll GET /api/jobs/{job_id} instead, or retry later",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            self._open += 1
        return EventStream(events, self._release)

    def _release(self) -> None:
        with self._lock:
            self._open -= 1
