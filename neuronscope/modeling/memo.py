"""What is derived from one loaded model (scores, weight statistics, tuned batch sizes), kept with it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")

MEMO_ENTRIES = 64
"""Values kept per loaded model; the least recently used goes first beyond it."""


class ModelMemo:
    """Values computed once per loaded model, dropped with it (it lives on ``LoadedModel.memo``).

    Keys are tuples that begin with what the value is, e.g. ``("scores", method, calibration key)``.
    Compute under the model lock (``manager.use()``), as every analysis does: the memo's own lock
    only guards its dictionary, so two threads asking for a missing key at once would both compute.
    """

    def __init__(self, entries: int = MEMO_ENTRIES):
        self.entries = entries
        self._values: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value of ``key``, computed by ``compute()`` on first use."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]  # type: ignore[return-value]
        value = compute()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.entries:
                self._values.popitem(last=False)
        return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)
