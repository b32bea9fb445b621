"""Wake the delivery worker when outbox rows are committed, instead of waiting for its next poll.

- In one process (``cgt-gateway serve`` runs the worker in a thread): :func:`gateway.delivery.outbox.enqueue`
  marks the session (:func:`mark_enqueued`); a listener on every SQLAlchemy ``Session`` fires the
  subscribers of that database AFTER the transaction commits (never before: the worker must see the
  rows), from the committing thread.  A rollback drops the mark.
- Across processes on PostgreSQL: the same transaction sends ``NOTIFY cgt_outbox`` (payload: the
  destinations), which PostgreSQL delivers on commit; :class:`PgListener` (a thread with its own
  connection) ``LISTEN``\\s and fires the subscribers.  SQLite has no such channel: a standalone
  worker on SQLite keeps polling.

A wake-up is only a hint: a missed one costs a poll interval, a spurious one a query.  The worker
keeps polling as the fallback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

__all__ = ["CHANNEL", "Wake", "database_key", "mark_enqueued", "subscribe", "notify", "PgListener"]

log = logging.getLogger("cgt_gateway.delivery")

CHANNEL = "cgt_outbox"
_MARK = "cgt_outbox_enqueued"  # session.info key: {database key: set of destinations}

# Called with the destinations that got rows (None: unknown, check them all); from any thread.
Wake = Callable[[frozenset[str] | None], None]

_lock = threading.Lock()
_subscribers: dict[str, list[Wake]] = {}


def database_key(engine: Engine) -> str:
    """Which database an engine (or a connection's engine) talks to; the password is never in it."""
    return engine.url.render_as_string(hide_password=True)


def subscribe(engine: Engine, wake: Wake) -> Callable[[], None]:
    """Call ``wake`` after each commit in this process that enqueued rows; returns the unsubscribe."""
    key = database_key(engine)
    with _lock:
        _subscribers.setdefault(key, []).append(wake)

    def unsubscribe() -> None:
        with _lock:
            callbacks = _subscribers.get(key, [])
            if wake in callbacks:
                callbacks.remove(wake)
            if not callbacks:
                _subscribers.pop(key, None)

    return unsubscribe


def notify(key: str, destinations: frozenset[str] | None) -> None:
    with _lock:
        callbacks = list(_subscribers.get(key, ()))
    for wake in callbacks:
        try:
            wake(destinations)
        except Exception as exc:  # a hint must never fail the committing request
            log.warning("outbox wake-up failed", extra={"error": type(exc).__name__})


def mark_enqueued(session: Session, destinations: Iterable[str]) -> None:
    """Remember, on the session, that this transaction enqueued rows for ``destinations``."""
    try:
        bind = session.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
    except Exception:  # a hint must never fail the enqueue: without it the worker polls
        return
    marks: dict[str, set[str]] = session.info.setdefault(_MARK, {})
    marks.setdefault(database_key(engine), set()).update(destinations)
    if engine.dialect.name == "postgresql":
        session.info.setdefault(_MARK + ":pg", True)


@event.listens_for(Session, "before_commit")
def _notify_other_processes(session: Session) -> None:
    """On PostgreSQL, NOTIFY inside the transaction: delivered to listeners when it commits."""
    if not session.info.pop(_MARK + ":pg", False):
        return
    destinations = sorted(set().union(*session.info.get(_MARK, {}).values()))
    session.connection().exec_driver_sql("SELECT pg_notify(%(channel)s, %(payload)s)",
                                         {"channel": CHANNEL, "payload": "\n".join(destinations)[:7000]})


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    marks: dict[str, set[str]] | None = session.info.pop(_MARK, None)
    for key, destinations in (marks or {}).items():
        notify(key, frozenset(destinations))


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_MARK, None)
    session.info.pop(_MARK + ":pg", None)


class PgListener:
    """``LISTEN cgt_outbox`` on a connection of its own, in a daemon thread; reconnects after errors."""

    def __init__(self, engine: Engine, wake: Wake, *, check_s: float = 0.25, retry_s: float = 1.0) -> None:
        self._engine = engine
        self._wake = wake
        self._check_s = check_s
        self._retry_s = retry_s
        self._stop = threading.Event()
        self.listening = threading.Event()  # set while LISTEN is in effect (tests wait on it)
        self._thread = threading.Thread(target=self._run, name="cgt-outbox-listen", daemon=True)

    def start(self) -> PgListener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._check_s * 4)

    def _connect(self) -> Any:
        dialect = self._engine.dialect
        cargs, cparams = dialect.create_connect_args(self._engine.url)
        connection = dialect.loaded_dbapi.connect(*cargs, **cparams)
        connection.autocommit = True
        connection.execute(f"LISTEN {CHANNEL}")
        return connection

    def _run(self) -> None:
        while not self._stop.is_set():
            connection = None
            try:
                connection = self._connect()
                self.listening.set()
                self._wake(None)  # rows may have been committed while we were not listening
                while not self._stop.is_set():
                    for note in connection.notifies(timeout=self._check_s):
                        self._wake(frozenset(d for d in note.payload.split("\n") if d) or None)
            except Exception as exc:  # the database went away: polling covers us until we are back
                self.listening.clear()
                log.warning("outbox LISTEN connection failed; polling meanwhile",
                            extra={"error": type(exc).__name__})
                self._stop.wait(self._retry_s)
            finally:
                if connection is not None:
                    try:
                        connection.close()
                    except Exception:  # noqa: S110 - closing a broken connection
                        pass
        self.listening.clear()
