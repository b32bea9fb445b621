"""The LRU behind the statement caches: bounded in entries and in total weight; an entry heavier than
the whole budget is built and returned but never kept."""

from __future__ import annotations

import threading

import pytest

from gateway.store.statement_cache import BoundedCache


def test_least_recently_used_entries_go_first_when_either_bound_is_passed():
    cache: BoundedCache[str] = BoundedCache(max_entries=3, max_weight=10)
    for key in "abc":
        cache.get_or_build(key, lambda key=key: key.upper(), lambda _: 1)
    cache.get_or_build("a", lambda: "never built", lambda _: 1)  # a hit: "a" is now the newest
    cache.get_or_build("d", lambda: "D", lambda _: 1)  # four entries: the oldest, "b", goes
    assert len(cache) == 3 and cache.hits == 1 and cache.misses == 4
    assert cache.get_or_build("b", lambda: "B2", lambda _: 1) == "B2"  # rebuilt
    cache.get_or_build("heavy", lambda: "H", lambda _: 8)  # weight 8 + ... > 10: older entries go
    assert cache.weight <= 10 and len(cache) <= 3
    assert cache.get_or_build("heavy", lambda: "never built", lambda _: 8) == "H"


def test_an_entry_heavier_than_the_budget_is_returned_but_not_kept():
    cache: BoundedCache[int] = BoundedCache(max_entries=8, max_weight=100)
    assert cache.get_or_build("giant", lambda: 42, lambda _: 101) == 42
    assert len(cache) == 0 and cache.weight == 0


def test_many_threads_leave_the_bounds_intact():
    cache: BoundedCache[int] = BoundedCache(max_entries=16, max_weight=64)

    def work(offset: int) -> None:
        for n in range(500):
            cache.get_or_build((offset + n) % 97, lambda n=n: n, lambda value: 1 + value % 7)

    threads = [threading.Thread(target=work, args=(t * 13,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) <= 16 and cache.weight <= 64
    assert cache.weight == sum(1 + value % 7 for value, _ in cache._entries.values())


def test_a_cache_needs_room():
    with pytest.raises(ValueError):
        BoundedCache(max_entries=0, max_weight=1)
