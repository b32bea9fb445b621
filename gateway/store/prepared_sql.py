"""Run cached Core statements on the DB-API cursor: compiled once per dialect, then one
``cursor.execute`` (or ``executemany``) per call.

Through ``Connection.execute`` every run of even a cached statement pays SQLAlchemy's cache-key
walk, its execution context, events and result set construction; on the ingest path (about fourteen
statements an event) and on an empty FHIR poll that machinery costs more than the database.  The
statements given here are long-lived (module level or cached), with every value a bound parameter.

**Reads** (:func:`fetch_all`): compiled for the connection's dialect and run on the connection's own
DB-API connection, outside any transaction SQLAlchemy begins (one SELECT reads one consistent
snapshot on its own).  On PostgreSQL (psycopg) a SELECT on a connection with no transaction open
runs in autocommit, as one statement is its own snapshot anyway: psycopg would otherwise send
``BEGIN`` before it and the pool ``ROLLBACK`` after it.  The switch is put back before the
connection goes back to the pool; inside a transaction the statement simply joins it.  A statement
whose compiled form needs type processing is run through ``Connection.execute`` instead.

**Statements in a transaction** (:func:`execute`, :func:`executemany`, :func:`fetch_rows`): INSERT,
UPDATE, DELETE (with or without RETURNING) and SELECTs run on the DB-API connection of ``conn``
only while ``conn`` is inside a transaction (the caller's, e.g. :func:`gateway.store.db.write_session`'s
``BEGIN IMMEDIATE`` or a PostgreSQL transaction holding ``FOR UPDATE`` locks); they never commit
and never autocommit.  With no transaction open they go through ``Connection.execute``, which
begins one as usual.  Bind and result processors (JSON, timestamps on SQLite, ...) are applied
exactly as SQLAlchemy applies them, so the same values are stored and read back.  Rows come back
as named tuples (attribute access by column key).

Driver errors are raised as SQLAlchemy's (``IntegrityError``, ``OperationalError`` and the rest, via
``DBAPIError.instance``), as ``execute`` would, so callers (intake's retry on ``IntegrityError``,
the API's error mapping) see what they saw before; a connection the driver reports as lost is
invalidated.  Statements that need SQLAlchemy at run time (parameters expanded at execution,
Python-side column defaults, escaped bind names) always run through ``Connection.execute``.

**Bounded memory.** Prepared statements are kept in :data:`PREPARED_CACHE`, an LRU bounded in entries
and in the total number of bound parameters (:class:`gateway.store.statement_cache.BoundedCache`), so the
variety of statements callers build (FHIR searches of many shapes) cannot make it grow without
limit.  For the same reason :func:`fetch_all`'s fallback through ``Connection.execute`` bypasses
SQLAlchemy's engine-wide compiled cache: its statements are cached per shape by their caller.

**What it buys** (``bench/RESULTS.md``, not measured alone): with the other ingest work of issue 7 it
took ingest from 96 to 168 events/s (SQLite, 4 clients) and keeps the empty FHIR poll at 0.89-1.10 of
a bare indexed SELECT (1,545-1,661 requests/s on SQLite).  **Its price:** it reads SQLAlchemy compiler
internals, so SQLAlchemy is capped (``<2.2`` in pyproject.toml); upgrade deliberately, and prefer a
public SQLAlchemy API if one reaches the same ``make bench`` figures.  **Interface:** the functions
in ``__all__`` that run a statement (``fetch_all``, ``fetch_rows``, ``execute``, ``executemany``),
plus ``prepared_for``/``compiled_for`` for tests; only the store, intake, the delivery queue and the
FHIR search import it (an import-linter ``protected`` contract).  **Equivalence is guarded by**
``tests/integration/test_prepared_sql.py`` (same rows, values, errors and transaction behaviour as
``Connection.execute``, SQLite and PostgreSQL) and ``tests/integration/test_fhir_search_prepared.py``
(searches take the cursor path and answer as before).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

from gateway.store.statement_cache import BoundedCache

__all__ = ["fetch_all", "compiled_for", "prepared_for", "execute", "executemany", "executemany_all",
           "fetch_rows", "fetch_rows_all", "PREPARED_CACHE"]


def compiled_for(dialect: Dialect, statement: Any, keys: tuple[str, ...] = ()) -> Prepared | None:
    """``statement`` prepared for ``dialect`` (:func:`prepared_for`) when it can run on the bare cursor
    with no type processing at all; None otherwise (:func:`fetch_all` then uses ``Connection.execute``)."""
    prepared = prepared_for(dialect, statement, keys)
    if prepared is None or prepared.processors or any(prepared.result_processors or ()):
        return None
    return prepared


def fetch_all(conn: Connection, statement: Any, binds: dict[str, Any]) -> list[Any]:
    """The rows of ``statement`` with ``binds``: plain tuples in the statement's column order."""
    prepared = compiled_for(conn.dialect, statement, tuple(sorted(binds)))
    if prepared is None:  # the caller caches the statement; SQLAlchemy's cache would keep a 2nd copy
        return [tuple(row) for row in conn.execute(statement, binds,
                                                   execution_options={"compiled_cache": None})]
    params = _params(prepared, binds)
    proxied = conn.connection
    dbapi_connection: Any = proxied.dbapi_connection
    statement_level = _idle_psycopg(conn, dbapi_connection)
    if statement_level:
        dbapi_connection.autocommit = True
    try:
        with _cursor(conn, prepared.sql, params) as cursor:
            cursor.execute(prepared.sql, params)
            return list(cursor.fetchall())
    finally:
        if statement_level and not conn.invalidated:
            try:
                dbapi_connection.autocommit = False
            except conn.dialect.loaded_dbapi.Error as exc:  # broken: never hand it back to the pool
                conn.invalidate(exc)


def _idle_psycopg(conn: Connection, dbapi_connection: Any) -> bool:
    """A psycopg connection outside any transaction (SQLAlchemy's or the driver's)."""
    if conn.dialect.driver != "psycopg" or conn.in_transaction():
        return False
    from psycopg.pq import TransactionStatus

    return (dbapi_connection.autocommit is False
            and dbapi_connection.info.transaction_status == TransactionStatus.IDLE)


# --------------------------------------------------------------------------- in a transaction


@dataclass(frozen=True)
class Prepared:
    """A statement compiled for one dialect, with what running it on the cursor needs."""

    sql: str
    compiled: Any  # sqlalchemy.sql.compiler.SQLCompiler
    names: tuple[str, ...]  # positional: bind names in order; named: every bind name
    positional: bool
    processors: dict[str, Callable[[Any], Any]]  # bind name -> bind processor
    result_processors: tuple[Callable[[Any], Any] | None, ...] | None  # None: no result columns
    row_type: Any  # a namedtuple class over the result columns' keys (None: no result columns)
    direct: bool  # every bind takes its value from the parameters (no constants): no construct_params


# at most 512 statements holding 16384 bound parameters in all (a statement heavier than that is
# compiled for each run and never kept)
PREPARED_CACHE: BoundedCache[Prepared | None] = BoundedCache(max_entries=512, max_weight=16_384)


def _weight(prepared: Prepared | None) -> int:
    return 1 if prepared is None else len(prepared.names) + 1


def prepared_for(dialect: Dialect, statement: Any, keys: tuple[str, ...] = (),
                 many: bool = False) -> Prepared | None:
    """``statement`` compiled for ``dialect`` as ``Connection.execute`` compiles it for parameter
    sets with ``keys`` (sorted), with its type processors; None when it needs SQLAlchemy at run time
    (it then runs through ``Connection.execute``).  Kept in :data:`PREPARED_CACHE`."""
    return PREPARED_CACHE.get_or_build((dialect, statement, keys, many),
                                       lambda: _prepare(dialect, statement, keys, many), _weight)


def _prepare(dialect: Dialect, statement: Any, keys: tuple[str, ...], many: bool) -> Prepared | None:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys), for_executemany=many)
    if (compiled.literal_execute_params or compiled.post_compile_params
            or getattr(compiled, "escaped_bind_names", None)
            or getattr(compiled, "insert_prefetch", None) or getattr(compiled, "update_prefetch", None)):
        return None
    processors: dict[str, Callable[[Any], Any]] = {}
    for name, processor in compiled._bind_processors.items():
        if not callable(processor):  # tuple types: not used here
            return None
        processors[name] = processor
    if compiled.positional:
        names = tuple(compiled.positiontup)
    else:
        names = tuple(compiled.bind_names.values())
    result_processors: tuple[Callable[[Any], Any] | None, ...] | None = None
    row_type: Any = None
    columns = getattr(compiled, "_result_columns", None)
    if columns:
        result_processors = tuple(column[3]._cached_result_processor(dialect, None) for column in columns)
        row_type = _row_type(tuple(column[0] for column in columns))
    direct = set(names) <= set(keys) and all(bind.callable is None for bind in compiled.binds.values())
    return Prepared(compiled.string, compiled, names, bool(compiled.positional), processors,
                    result_processors, row_type, direct)


def _row_type(keys: tuple[str, ...]) -> Any:
    """A named tuple class over result column keys (attribute access, ``_asdict``)."""
    return collections.namedtuple("Row", keys, rename=True)


def _params(prepared: Prepared, binds: dict[str, Any]) -> Any:
    processors = prepared.processors
    if prepared.direct:
        if prepared.positional:
            return tuple(processors[name](binds[name]) if name in processors else binds[name]
                         for name in prepared.names)
        return {name: processors[name](binds[name]) if name in processors else binds[name]
                for name in prepared.names}
    values = prepared.compiled.construct_params(binds, escape_names=False)
    if prepared.positional:
        return tuple(processors[name](values[name]) if name in processors else values[name]
                     for name in prepared.names)
    if processors:
        for name, processor in processors.items():
            values[name] = processor(values[name])
    return values


@contextmanager
def _cursor(conn: Connection, sql: str, params: Any) -> Iterator[Any]:
    """A cursor of ``conn``'s DB-API connection; driver errors come out as SQLAlchemy's."""
    proxied = conn.connection
    error = conn.dialect.loaded_dbapi.Error
    cursor = proxied.cursor()
    try:
        with _driver_errors(conn, sql, params, cursor):
            yield cursor
    finally:
        try:
            cursor.close()
        except error as exc:  # the connection broke under us: never hand it back to the pool
            conn.invalidate(exc)


@contextmanager
def _driver_errors(conn: Connection, sql: str, params: Any, cursor: Any = None) -> Iterator[None]:
    """Driver errors raised in the block come out as SQLAlchemy's (a lost connection is invalidated)."""
    error = conn.dialect.loaded_dbapi.Error
    try:
        yield
    except error as exc:
        lost = conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(sql, params, exc, error,
                                          connection_invalidated=lost, dialect=conn.dialect) from exc


def _in_transaction(conn: Connection, statement: Any, binds: dict[str, Any],
                    many: bool = False) -> Prepared | None:
    """The prepared form of ``statement`` if ``conn`` is inside a transaction, else None."""
    if not conn.in_transaction() or conn.invalidated:
        return None
    return prepared_for(conn.dialect, statement, tuple(sorted(binds)), many)


def _rows(prepared: Prepared, raw: Sequence[Any]) -> list[Any]:
    processors = prepared.result_processors
    make = prepared.row_type._make
    if processors is None or not any(processors):
        return [make(row) for row in raw]
    return [make([value if p is None or value is None else p(value) for p, value in zip(processors, row,
                                                                                        strict=True)])
            for row in raw]


def fetch_rows(conn: Connection, statement: Any, binds: dict[str, Any]) -> list[Any]:
    """The rows of a SELECT, or of an INSERT/UPDATE/DELETE ... RETURNING, run in ``conn``'s open
    transaction: named tuples, values as SQLAlchemy would return them."""
    prepared = _in_transaction(conn, statement, binds)
    if prepared is None or prepared.row_type is None:
        return list(conn.execute(statement, binds))
    params = _params(prepared, binds)
    with _cursor(conn, prepared.sql, params) as cursor:
        cursor.execute(prepared.sql, params)
        raw = cursor.fetchall()
    return _rows(prepared, raw)


def execute(conn: Connection, statement: Any, binds: dict[str, Any]) -> int:
    """Run an INSERT/UPDATE/DELETE in ``conn``'s open transaction; the number of rows it matched."""
    prepared = _in_transaction(conn, statement, binds)
    if prepared is None:
        return int(conn.execute(statement, binds).rowcount)
    params = _params(prepared, binds)
    with _cursor(conn, prepared.sql, params) as cursor:
        cursor.execute(prepared.sql, params)
        return int(cursor.rowcount)


def executemany(conn: Connection, statement: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Run an INSERT/UPDATE/DELETE (no RETURNING) once per parameter set, in ``conn``'s open
    transaction."""
    if not rows:
        return
    prepared = _in_transaction(conn, statement, rows[0], many=len(rows) > 1)
    if prepared is None or prepared.row_type is not None:
        conn.execute(statement, list(rows))
        return
    params = [_params(prepared, row) for row in rows]
    with _cursor(conn, prepared.sql, params) as cursor:
        cursor.executemany(prepared.sql, params)


def executemany_all(conn: Connection, batches: Sequence[tuple[Any, Sequence[dict[str, Any]]]]) -> None:
    """:func:`executemany` of each ``(statement, rows)`` in turn (batches without rows are skipped), in
    ``conn``'s open transaction.  On psycopg they are sent in ONE pipeline: one round trip for all of
    them instead of one per statement; an error of any of them is raised (as SQLAlchemy's) when the
    pipeline ends, and the transaction is then aborted as after any failed statement."""
    batches = [(statement, rows) for statement, rows in batches if rows]
    pipelined = conn.dialect.driver == "psycopg" and len(batches) > 1
    plans = [(_in_transaction(conn, statement, rows[0], many=len(rows) > 1), rows)
             for statement, rows in batches] if pipelined else []
    if not plans or any(prepared is None or prepared.row_type is not None for prepared, _ in plans):
        for statement, rows in batches:
            executemany(conn, statement, rows)
        return
    proxied = conn.connection
    dbapi_connection: Any = proxied.dbapi_connection
    cursors: list[Any] = []
    sql = "; ".join(prepared.sql for prepared, _ in plans if prepared is not None)
    try:
        with _driver_errors(conn, sql, None), dbapi_connection.pipeline():
            for prepared, rows in plans:
                assert prepared is not None
                cursor = proxied.cursor()
                cursors.append(cursor)
                cursor.executemany(prepared.sql, [_params(prepared, row) for row in rows])
    finally:
        for cursor in cursors:
            try:
                cursor.close()
            except conn.dialect.loaded_dbapi.Error as exc:
                conn.invalidate(exc)


def fetch_rows_all(conn: Connection, queries: Sequence[tuple[Any, dict[str, Any]]]) -> list[list[Any]]:
    """:func:`fetch_rows` of each ``(statement, binds)`` in turn, in ``conn``'s open transaction; the
    rows of each.  On psycopg they are sent in ONE pipeline (one round trip for all of them), each still
    run after the one before it, so a later statement sees what an earlier one wrote or locked."""
    plans = [(_in_transaction(conn, statement, binds), binds) for statement, binds in queries] \
        if conn.dialect.driver == "psycopg" and len(queries) > 1 else []
    if not plans or any(prepared is None or prepared.row_type is None for prepared, _ in plans):
        return [fetch_rows(conn, statement, binds) for statement, binds in queries]
    proxied = conn.connection
    dbapi_connection: Any = proxied.dbapi_connection
    cursors: list[Any] = []
    sql = "; ".join(prepared.sql for prepared, _ in plans if prepared is not None)
    try:
        with _driver_errors(conn, sql, None), dbapi_connection.pipeline():
            for prepared, binds in plans:
                assert prepared is not None
                cursor = proxied.cursor()
                cursors.append(cursor)
                cursor.execute(prepared.sql, _params(prepared, binds))
            raws = [cursor.fetchall() for cursor in cursors]
        return [_rows(prepared, raw) for (prepared, _), raw in zip(plans, raws, strict=True)
                if prepared is not None]
    finally:
        for cursor in cursors:
            try:
                cursor.close()
            except conn.dialect.loaded_dbapi.Error as exc:
                conn.invalidate(exc)
