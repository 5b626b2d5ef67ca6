"""What is derived from one loaded model (scores, weight statistics, tuned batch sizes), kept with it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable, TypeVar

T = TypeVar("T")

MEMO_ENTRIES = 64
"""Values kept per loaded model and kind (a key's first item); the least recently used of that kind goes first beyond it."""


class ModelMemo:
    """Values computed once per loaded model, dropped with it (it lives on ``LoadedModel.memo``).

    Keys are tuples that begin with what the value is, e.g. ``("scores", method, calibration key)``;
    each kind has its own bound, so many cheap values (neuron pages) never push out costly ones (scores).
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
            kind = [k for k in self._values if _kind(k) == _kind(key)]
            for old in kind[: max(0, len(kind) - self.entries)]:
                del self._values[old]
        return value

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._values

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)


def _kind(key: Hashable) -> Hashable:
    return key[0] if isinstance(key, tuple) and key else key
