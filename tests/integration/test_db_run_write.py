"""``gateway.store.db.run_write``: SQLite writes on the engine's one writer thread, PostgreSQL's in the
pool."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlmodel import Session, select

from gateway.errors import NotFound
from gateway.store.db import run_write
from gateway.store.tables import EventRow, OrderRow
from tests.conftest import ACME, event_body, order_body

_TAG: contextvars.ContextVar[str] = contextvars.ContextVar("tag", default="unset")


def _gather(engine, calls):
    async def main():
        return await asyncio.gather(*(run_write(engine, fn, *args) for fn, *args in calls))

    return asyncio.run(main())


def test_writes_run_off_the_loop_with_the_callers_context_and_their_result(engine):
    loop_thread = threading.get_ident()

    def where(n):
        return n, threading.get_ident(), threading.current_thread().name, _TAG.get()

    async def main():
        _TAG.set("request-7")
        return await asyncio.gather(*(run_write(engine, where, n) for n in range(8)))

    results = asyncio.run(main())
    assert [r[0] for r in results] == list(range(8))
    assert all(r[1] != loop_thread for r in results)
    assert all(r[3] == "request-7" for r in results)
    if engine.dialect.name == "sqlite":
        assert {r[2] for r in results} == {"cgt-sqlite-writer_0"}
        assert len({r[1] for r in results}) == 1
    else:
        assert not any(r[2].startswith("cgt-sqlite-writer") for r in results)


def test_sqlite_writes_never_overlap_postgresql_writes_do(engine):
    sqlite = engine.dialect.name == "sqlite"
    together = threading.Barrier(4, timeout=30)  # PostgreSQL: all four are inside at once
    inside = 0
    most = 0
    lock = threading.Lock()

    def write(n):
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        if sqlite:
            threading.Event().wait(0.01)  # room for a second thread to enter, if one could
        else:
            together.wait()
        with lock:
            inside -= 1
        return n

    assert _gather(engine, [(write, n) for n in range(4)]) == [0, 1, 2, 3]
    assert most == (1 if sqlite else 4)


def test_an_exception_reaches_the_awaiting_request_and_the_writer_goes_on(engine):
    def fails():
        raise NotFound("No order X.")

    async def main():
        try:
            await run_write(engine, fails)
        except NotFound as exc:
            caught = exc.detail
        return caught, await run_write(engine, lambda: "next")

    assert asyncio.run(main()) == ("No order X.", "next")


def test_concurrent_http_events_all_commit_once_each(client, engine):
    assert client.post("/v1/orders", json=order_body("RW-1"), headers=ACME).status_code == 201
    body = event_body("E1", "order.confirmed", "2026-11-01T10:00:00Z", {"slot_id": "S1"})

    def post(i):
        return client.post("/v1/orders/RW-1/events", json=body, headers=ACME).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, range(8)))
    assert Counter(codes) == {201: 1, 200: 7}
    with Session(engine) as session:
        order = session.exec(select(OrderRow).where(OrderRow.order_id == "RW-1")).one()
        events = session.exec(select(EventRow).where(EventRow.order_pk == order.id)).all()
        assert sorted(e.sequence for e in events) == [0, 1]
        assert order.last_sequence == 1
