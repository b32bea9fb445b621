"""Engines, migrations and transactions for SQLite (default) and PostgreSQL (psycopg 3).

SQLite runs in WAL mode with a busy timeout and foreign keys on; its transactions are begun by us
(``BEGIN``, or ``BEGIN IMMEDIATE`` for :func:`write_session`, which takes the write lock up front
so two writers never both read-then-insert).  Writers in one process also queue on a lock of the
engine before ``BEGIN IMMEDIATE``: SQLite's busy handler polls with sleeps of up to 100 ms, so
threads contending in SQLite wait far longer than the lock is held; a thread waiting on the
in-process lock wakes as soon as the previous writer commits.  Other processes (a standalone
delivery worker) still meet the busy timeout.  On PostgreSQL, writers lock the rows they change
(``SELECT ... FOR UPDATE``) and unique constraints settle races.

Request handlers run their write transactions through :func:`run_write`: on SQLite, on ONE writer
thread per engine (writes are serialized by the lock anyway; N thread-pool threads queuing on it
only add GIL switches and a lock convoy), so reads in the thread pool never queue behind writes;
on PostgreSQL, in the thread pool, concurrently (writers lock only their own order's rows).

Alembic lives in ``gateway/store/migrations``; :func:`migrate` upgrades to head.  Every module that
defines tables is listed in :data:`TABLE_MODULES` so that migrations and the metadata check see it.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import importlib
import threading
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel
from starlette.concurrency import run_in_threadpool

__all__ = [
    "TABLE_MODULES",
    "MIGRATIONS_DIR",
    "make_engine",
    "alembic_config",
    "migrate",
    "metadata",
    "read_session",
    "write_session",
    "run_write",
    "is_postgresql",
    "ping",
]

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Modules whose SQLModel tables belong to the schema (imported when present).
TABLE_MODULES = ("gateway.store.tables", "gateway.store.fhir", "gateway.delivery.outbox",
                 "gateway.oauth.tables", "gateway.store.site_request_tables", "gateway.console.tables",
                 "gateway.audit.tables", "gateway.alerts.tables", "gateway.store.subscription_tables")
_WRITE = "cgt_write"
_WRITE_ENGINE = "_cgt_write_engine"
_SQLITE_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, ThreadPoolExecutor] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()
T = TypeVar("T")


def metadata() -> sa.MetaData:
    """SQLModel's metadata with every table module imported."""
    for name in TABLE_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
    return SQLModel.metadata


def _normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def is_postgresql(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``: SQLite (file, WAL, busy timeout) or PostgreSQL via psycopg 3."""
    url = _normalise_url(url)
    if url.startswith("sqlite"):
        database = sa.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _configure_sqlite(engine)
        _SQLITE_WRITE_LOCKS[engine] = threading.RLock()
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return sa.create_engine(url, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see _on_begin)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest migration (``alembic upgrade head``)."""
    command.upgrade(alembic_config(engine), "head")


@contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session


def _write_engine(engine: Engine) -> Engine:
    """``engine`` with the write option set, made once (a new option engine per call costs ~0.1 ms)."""
    writer: Engine | None = engine.__dict__.get(_WRITE_ENGINE)
    if writer is None:  # kept on the engine itself: a cycle the collector frees with the engine
        writer = engine.__dict__.setdefault(_WRITE_ENGINE, engine.execution_options(**{_WRITE: True}))
    return writer


@contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session whose transaction takes the write lock at once on SQLite (``BEGIN IMMEDIATE``).

    Commits when the block ends normally, rolls back on an exception.  On a SQLite engine made by
    :func:`make_engine`, writers of this process take turns on the engine's lock first.
    """
    lock = _SQLITE_WRITE_LOCKS.get(engine)
    writer = _write_engine(engine)
    if lock is None:
        with Session(writer, expire_on_commit=False) as session:
            with session.begin():
                yield session
        return
    with lock, Session(writer, expire_on_commit=False) as session:
        with session.begin():
            yield session


def _sqlite_writer(engine: Engine) -> ThreadPoolExecutor | None:
    """The engine's one writer thread (made on first use); None on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return None
    writer = _SQLITE_WRITERS.get(engine)
    if writer is None:
        with _WRITERS_LOCK:
            writer = _SQLITE_WRITERS.get(engine)
            if writer is None:
                writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cgt-sqlite-writer")
                _SQLITE_WRITERS[engine] = writer
    return writer


async def run_write(engine: Engine, func: Callable[..., T], *args: Any) -> T:
    """``func(*args)`` off the event loop, for a request whose work is a write transaction on ``engine``.

    SQLite: on the engine's single writer thread, in arrival order (context variables carried over).
    PostgreSQL: in the thread pool, so writers to different orders run concurrently.
    If the awaiting request is cancelled, the call still runs to its end (commit or rollback).
    """
    writer = _sqlite_writer(engine)
    if writer is None:
        return await run_in_threadpool(func, *args)
    call = functools.partial(contextvars.copy_context().run, func, *args)
    return await asyncio.get_running_loop().run_in_executor(writer, call)


def ping(engine: Engine) -> None:
    """Raises if the database cannot answer ``SELECT 1``."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
