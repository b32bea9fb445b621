"""The database goes away mid-queue: the worker survives, and resumes when it returns.

The worker has its own engine; while the outage lasts every statement it sends fails with the
driver's own OperationalError (what a locked, full or unreachable database raises): before
SQLAlchemy runs it and, on PostgreSQL, in the DB-API cursor too (the worker runs its per-message
statements on the cursor, :mod:`gateway.store.prepared_sql`).  On PostgreSQL its server connections are
also killed (``pg_terminate_backend``) when the outage starts and ends.
"""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from gateway.delivery.outbox import MessageState
from gateway.delivery.senders import DestinationSenders
from gateway.delivery.worker import DeliveryWorker
from gateway.store.db import make_engine
from tests.integration.test_delivery_support import (
    FAST,
    Peer,
    PeerLoop,
    all_finished,
    enqueue_mllp,
    messages,
    received_in_order_allowing_resends,
    site_profile,
    wait_until,
)

APP_NAME = "cgt-outage-worker"


def _worker_engine(engine: Engine) -> Engine:
    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        url += ("&" if "?" in url else "?") + f"application_name={APP_NAME}"
    return make_engine(url)


def _terminate_worker_backends(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        return
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE application_name = :name AND pid <> pg_backend_pid()"),
                     {"name": APP_NAME})
        conn.commit()


def test_the_worker_survives_a_database_outage_and_resumes(engine: Engine) -> None:
    worker_engine = _worker_engine(engine)
    outage = threading.Event()
    failures = 0

    def fail_while_down() -> None:
        nonlocal failures
        if outage.is_set():
            failures += 1
            raise worker_engine.dialect.loaded_dbapi.OperationalError("injected: database unavailable")

    @event.listens_for(worker_engine, "before_cursor_execute")
    def _fail_while_down(*_args: object) -> None:
        fail_while_down()

    if worker_engine.dialect.name == "postgresql":  # statements run on the DB-API cursor fail too
        import psycopg

        class FailingCursor(psycopg.Cursor[Any]):
            def execute(self, *args: Any, **kwargs: Any) -> Any:
                fail_while_down()
                return super().execute(*args, **kwargs)

        @event.listens_for(worker_engine, "connect")
        def _failing_cursors(dbapi_connection: Any, _record: object) -> None:
            dbapi_connection.cursor_factory = FailingCursor

    peers = PeerLoop()
    expected = [f"M{i:03d}" for i in range(60)]
    try:
        peer = Peer(peers).start()
        began = threading.Event()

        def go_down_after_m020(cid: str) -> None:  # right after a send, before its result is written
            if cid == "M020" and not began.is_set():
                began.set()
                outage.set()

        peer.on_receive = go_down_after_m020
        enqueue_mllp(engine, expected)
        senders = DestinationSenders({"site-a": site_profile(mllp_port=peer.port)})
        worker = DeliveryWorker(worker_engine, senders, settings=FAST, close_senders=senders.aclose)
        stop = worker.run_in_thread()
        try:
            wait_until(outage.is_set, "the outage begins")
            _terminate_worker_backends(engine)
            wait_until(lambda: failures >= 30, "the worker keeps trying through the outage")
            received_during_outage = len(peer.received)
            _terminate_worker_backends(engine)
            outage.clear()
            wait_until(lambda: all_finished(engine), "the queue drains after the outage")
        finally:
            stop()
    finally:
        peers.close()
        worker_engine.dispose()
    assert received_during_outage <= expected.index("M020") + 2  # it did not race ahead blind
    rows = messages(engine)
    assert all(m.state == MessageState.delivered for m in rows)
    # every message, in order; the one whose result could not be written was resent with its own MSH-10
    assert received_in_order_allowing_resends(peer.received, expected)
    assert peer.received.count("M020") == 2 and len(peer.received) == len(expected) + 1
