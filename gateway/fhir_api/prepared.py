"""Run a cached Core statement on the DB-API cursor: compiled once per dialect, then one
``cursor.execute`` per request.

The FHIR search statements are built once per shape (:mod:`gateway.fhir_api.query`) with every value a
bound parameter.  Through ``Connection.execute`` each run still pays SQLAlchemy's cache-key walk, its
execution context and (on SQLite) the ``BEGIN`` the engine emits for a transaction; a poll that finds
nothing spends most of its database time there.  :func:`fetch_all` compiles the statement once for the
connection's dialect and runs it on the connection's own DB-API connection, outside any transaction
SQLAlchemy begins (one SELECT reads one consistent snapshot on its own).  Driver errors are raised as
SQLAlchemy's (``OperationalError`` and the rest, via ``DBAPIError.instance``), as ``execute`` would,
so callers map them the same way; a connection the driver reports as lost is invalidated.

On PostgreSQL (psycopg) a SELECT on a connection with no transaction open runs in autocommit, as
one statement is its own snapshot anyway: psycopg would otherwise send ``BEGIN`` before it and the
pool ``ROLLBACK`` after it, two of the poll's four round trips.  The switch is put back before the
connection goes back to the pool; inside a transaction the statement simply joins it.

A statement whose compiled form needs SQLAlchemy at run time (bind or result processors, or
parameters expanded at execution) is run through ``Connection.execute`` instead.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

__all__ = ["fetch_all", "compiled_for"]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    compiled: Any  # sqlalchemy.sql.compiler.SQLCompiler
    positional: tuple[str, ...] | None  # bind names in order for qmark/format; None for named styles


@functools.lru_cache(maxsize=512)
def compiled_for(dialect: Dialect, statement: Any) -> _Compiled | None:
    """``statement`` (a long-lived, cached Core statement) compiled for ``dialect``, or None when it
    cannot run on the bare cursor."""
    compiled = statement.compile(dialect=dialect)
    processors = getattr(compiled, "_bind_processors", None)
    if processors or compiled.literal_execute_params or compiled.post_compile_params:
        return None
    if getattr(compiled, "_result_columns", None) and any(
        column[3]._cached_result_processor(dialect, None) is not None
        for column in compiled._result_columns
    ):
        return None
    positional = tuple(compiled.positiontup) if compiled.positional else None
    return _Compiled(compiled.string, compiled, positional)


def fetch_all(conn: Connection, statement: Any, binds: dict[str, Any]) -> list[Any]:
    """The rows of ``statement`` with ``binds``: plain tuples in the statement's column order."""
    prepared = compiled_for(conn.dialect, statement)
    if prepared is None:
        return [tuple(row) for row in conn.execute(statement, binds)]
    values = prepared.compiled.construct_params(binds)
    params: Any = (tuple(values[name] for name in prepared.positional)
                   if prepared.positional is not None else values)
    proxied = conn.connection
    dbapi_connection: Any = proxied.dbapi_connection
    error = conn.dialect.loaded_dbapi.Error
    statement_level = _idle_psycopg(conn, dbapi_connection)
    if statement_level:
        dbapi_connection.autocommit = True
    cursor = proxied.cursor()
    try:
        cursor.execute(prepared.sql, params)
        return list(cursor.fetchall())
    except error as exc:
        lost = conn.dialect.is_disconnect(exc, dbapi_connection, cursor)
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(prepared.sql, params, exc, error,
                                          connection_invalidated=lost, dialect=conn.dialect) from exc
    finally:
        try:
            cursor.close()
            if statement_level and not conn.invalidated:
                dbapi_connection.autocommit = False
        except error as exc:  # the connection broke under us: never hand it back to the pool
            conn.invalidate(exc)


def _idle_psycopg(conn: Connection, dbapi_connection: Any) -> bool:
    """A psycopg connection outside any transaction (SQLAlchemy's or the driver's)."""
    if conn.dialect.driver != "psycopg" or conn.in_transaction():
        return False
    from psycopg.pq import TransactionStatus

    return (dbapi_connection.autocommit is False
            and dbapi_connection.info.transaction_status == TransactionStatus.IDLE)
