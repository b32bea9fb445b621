"""A destination loop's database calls: off the event loop, in order, errors and context carried."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from gateway.delivery.worker import _DatabaseThread

_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="none")


def test_calls_run_off_the_loop_in_order_with_the_callers_context() -> None:
    seen: list[tuple[int, str, str]] = []

    def work(n: int) -> int:
        seen.append((n, threading.current_thread().name, _TAG.get()))
        return n * 2

    async def main() -> list[int]:
        database = _DatabaseThread()
        try:
            _TAG.set("loop-7")
            return [await database.call(work, n) for n in range(3)]
        finally:
            database.stop()

    assert asyncio.run(main()) == [0, 2, 4]
    assert [n for n, _, _ in seen] == [0, 1, 2]
    assert {name for _, name, _ in seen} == {"cgt-delivery-db"}  # not the event loop's thread
    assert {tag for _, _, tag in seen} == {"loop-7"}


def test_an_error_reaches_the_caller_and_the_thread_goes_on() -> None:
    def fail() -> None:
        raise ValueError("database says no")

    async def main() -> str:
        database = _DatabaseThread()
        try:
            with pytest.raises(ValueError, match="database says no"):
                await database.call(fail)
            return await database.call(str.upper, "still here")
        finally:
            database.stop()

    assert asyncio.run(main()) == "STILL HERE"


def test_a_cancelled_caller_does_not_stop_the_call_and_stop_ends_the_thread() -> None:
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        release.wait(10)
        finished.set()

    async def main() -> _DatabaseThread:
        database = _DatabaseThread()
        task = asyncio.ensure_future(database.call(slow))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        database.stop()
        return database

    database = asyncio.run(main())
    database._thread.join(10)
    assert finished.is_set()  # the call ran to its end (its transaction is never cut in half)
    assert not database._thread.is_alive()
