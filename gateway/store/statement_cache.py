"""A small thread-safe LRU cache bounded both in entries and in total weight, for compiled SQL.

``functools.lru_cache`` bounds only the number of entries: when an entry can be a statement with
thousands of bound parameters (a search with many OR values), 256 of them hold gigabytes, so memory
would grow with the variety of requests.  Here each entry has a weight (its number of bound
parameters); the least recently used entries are dropped until both bounds hold, and an entry heavier
than the whole budget is built and returned but never kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

__all__ = ["BoundedCache"]

V = TypeVar("V")


class BoundedCache(Generic[V]):
    """LRU over ``key -> value`` with at most ``max_entries`` entries of total weight ``max_weight``."""

    def __init__(self, max_entries: int, max_weight: int) -> None:
        if max_entries < 1 or max_weight < 1:
            raise ValueError("a cache needs room for at least one entry")
        self.max_entries, self.max_weight = max_entries, max_weight
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._weight = 0
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get_or_build(self, key: Hashable, build: Callable[[], V], weigh: Callable[[V], int]) -> V:
        """The cached value of ``key``, else ``build()`` (outside the lock), kept if it fits."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return found[0]
            self.misses += 1
        value = build()
        weight = max(1, weigh(value))
        if weight > self.max_weight:
            return value
        with self._lock:
            if key in self._entries:  # another thread built it meanwhile: keep the first
                self._entries.move_to_end(key)
                return self._entries[key][0]
            self._entries[key] = (value, weight)
            self._weight += weight
            while len(self._entries) > self.max_entries or self._weight > self.max_weight:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._weight -= dropped
        return value

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def weight(self) -> int:
        """The total weight held (the number of bound parameters of the statements kept)."""
        return self._weight

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._weight = 0
