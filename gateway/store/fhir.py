"""The persisted FHIR resource store: every version of every resource the translation produced.

Tables (SQLModel; migration ``0002_fhir_store``):

- ``fhir_resource_version``: every version ever written (immutable), with the site, manufacturer
  and order whose event produced it.  Serves vread and ``_history``.
- ``fhir_resource_current``: the latest version of each resource.  Serves read and search.
- ``fhir_resource_access``: who may see a resource: one row per (resource, tenant), the tenant
  being ``site:<id>`` or ``manufacturer:<id>``.  A resource belongs to the one site and the one
  manufacturer whose order first wrote it: the translation derives every id from business
  identifiers scoped by site and manufacturer (parties) or by order (everything else, see
  :mod:`mappings.ids`), and :func:`save_translation` refuses (:class:`CrossTenantWrite`, nothing
  stored) a write that would add a version to a resource another tenant can see.  Reads check
  each *version* too (:func:`version_visible_clause`: the version's own site or manufacturer is the
  reader's), so vread and ``_history`` never show a version another tenant's order wrote, even of a
  resource stored before ids were scoped.  ``last_updated_us`` is copied from the current version
  so a tenant's poll walks an index ``(type, tenant, last_updated, id)`` and costs O(log n).
- ``fhir_search_token`` / ``fhir_search_date``: the search index of the current versions, filled
  from :data:`gateway.store.search_params.SEARCH_PARAMS`.
- ``fhir_clock``: one row, the last ``meta.lastUpdated`` handed out.

Times are integers, microseconds since the epoch (UTC): exact, index-friendly and identical on
SQLite and PostgreSQL.  Bodies are the resource JSON as orjson bytes (``bytea`` on PostgreSQL), so
the API serves them without re-serialising.

**Watermark correctness.** A poller asking ``_lastUpdated=gt<watermark>`` must never miss a version
that commits late with an earlier timestamp.  So ``meta.lastUpdated`` is monotonic in commit order:
every writer first takes the clock row's next stamp, ``max(now, last + 1 µs)``, in one
``UPDATE ... RETURNING`` (which locks the row on PostgreSQL; on SQLite the caller's ``BEGIN
IMMEDIATE`` (:func:`gateway.store.db.write_session`) already serialises writers), stamps its versions
with it and holds the lock until it commits (a call that then writes nothing leaves a gap in the
stamps, which no reader can tell from a quiet moment).  A transaction
that commits later therefore always carries a later ``lastUpdated`` than everything visible before
it.  The cost is that FHIR-writing transactions are serialised, which they are on SQLite anyway.

A new version is written only when a resource's content (ignoring ``meta.versionId`` and
``meta.lastUpdated``) differs from its latest version, or when a tenant gains access to it (so
the newly entitled site's ``_lastUpdated`` poll sees it).  Replays therefore write nothing.

**What a write costs.** The search index of an updated resource is brought up to date row by row
(only rows whose values changed are deleted or inserted: an updated Task keeps most of its ~10).
On PostgreSQL the reads (stamp, stored state, stored index) go in one pipelined round trip and
the writes in another (:func:`gateway.store.prepared_sql.fetch_rows_all` / ``executemany_all``).
Intake defers an event's writes to the end of its transaction (:func:`deferred_writes`), so the
clock row is held only for the writes, the audit append and the commit.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlmodel import Session

from gateway.errors import Conflict
from gateway.store import version_hooks
from gateway.store.fhir_read import PUBLIC_TYPES
from gateway.store.fhir_tables import (
    FhirClock,
    FhirResourceAccess,
    FhirResourceCurrent,
    FhirResourceVersion,
    FhirSearchDate,
    FhirSearchToken,
)
from gateway.store.prepared_sql import executemany_all, fetch_rows, fetch_rows_all
from gateway.store.search_params import format_instant, index_values, to_us

__all__ = [
    "FHIR_TABLES",
    "CrossTenantWrite",
    "save_translation",
    "deferred_writes",
    "publish_shared",
    "content_hash",
]



_V: sa.Table = FhirResourceVersion.__table__  # type: ignore[attr-defined]
_C: sa.Table = FhirResourceCurrent.__table__  # type: ignore[attr-defined]
_A: sa.Table = FhirResourceAccess.__table__  # type: ignore[attr-defined]
_T: sa.Table = FhirSearchToken.__table__  # type: ignore[attr-defined]
_D: sa.Table = FhirSearchDate.__table__  # type: ignore[attr-defined]
_K: sa.Table = FhirClock.__table__  # type: ignore[attr-defined]
FHIR_TABLES: tuple[sa.Table, ...] = (_V, _C, _A, _T, _D, _K)


class CrossTenantWrite(Conflict):
    """A write would add a version to a resource another tenant (site or manufacturer) can see.
    Resource ids are scoped so this cannot happen; if it ever does, the event is refused whole
    (its transaction rolls back) rather than show one tenant's data to another."""

    code = "tenant-conflict"


def content_hash(resource: dict[str, Any]) -> str:
    """SHA-256 of the resource without ``meta.versionId``/``meta.lastUpdated`` (sorted keys)."""
    content = dict(resource)
    meta = {k: v for k, v in (content.pop("meta", None) or {}).items()
            if k not in ("versionId", "lastUpdated")}
    if meta:
        content["meta"] = meta
    return hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _conn(session: Session | Connection) -> Connection:
    return session if isinstance(session, Connection) else session.connection()


_STAMP = sa.bindparam("now_us", type_=sa.BigInteger())
# One statement takes the clock's lock (PostgreSQL: the row lock; SQLite: the caller's BEGIN
# IMMEDIATE already serialises writers) and hands out the next stamp, max(now, last + 1 µs).
_NEXT_STAMP = _K.update().where(_K.c.id == 1).values(
    last_us=sa.case((_K.c.last_us < _STAMP, _STAMP), else_=_K.c.last_us + 1)).returning(_K.c.last_us)


def _next_stamp(conn: Connection, now_us: int) -> int:
    """Lock the clock row until commit and return the stamp of this transaction's versions."""
    stamped = fetch_rows(conn, _NEXT_STAMP, {"now_us": now_us})
    return int(stamped[0][0]) if stamped else _recreate_clock(conn, now_us)


def _recreate_clock(conn: Connection, now_us: int) -> int:
    """The migration seeds the clock row; recreate it if someone emptied the table, and stamp."""
    dialect_insert = postgresql_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(dialect_insert(_K).values(id=1, last_us=0).on_conflict_do_nothing())
    return int(conn.execute(_NEXT_STAMP, {"now_us": now_us}).scalar_one())


def save_translation(session: Session | Connection, *, site_id: str, manufacturer_id: str, order_id: str,
                     resources: Sequence[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Store the new versions of ``resources`` for one order; return the versions written (new
    top-level dicts and ``meta``; other values are shared with ``resources``, not copied).

    Runs inside the caller's transaction (the caller commits).  On SQLite the caller must hold the
    write lock from the start (:func:`gateway.store.db.write_session`).  Each resource needs
    ``resourceType`` and ``id``; a resource whose content equals its latest version, and which the
    site and manufacturer can already see, writes nothing.
    """
    deferred = _DEFERRED.get()
    if deferred is not None and deferred.conn is _conn(session):
        deferred.add(session, site_id, manufacturer_id, order_id, resources, now)
        return []
    return _save_and_hook(session, site_id, manufacturer_id, order_id, resources, now)


def _save_and_hook(session: Session | Connection, site_id: str, manufacturer_id: str, order_id: str,
                   resources: Sequence[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    tenants = (("site", site_id), ("manufacturer", manufacturer_id))
    written = _save(_conn(session), resources, now, tenants, (site_id, manufacturer_id, order_id))
    version_hooks.run(version_hooks.StoredVersions(session, site_id, manufacturer_id, order_id, written, now))
    return written


@dataclass
class _Batch:
    """Resources of consecutive deferred calls for the same order and time, no resource twice."""

    session: Session | Connection
    origin: tuple[str, str, str, datetime]  # site, manufacturer, order, now
    resources: list[dict[str, Any]] = field(default_factory=list)
    keys: set[tuple[Any, Any]] = field(default_factory=set)


@dataclass
class _Deferred:
    conn: Connection
    batches: list[_Batch] = field(default_factory=list)

    def add(self, session: Session | Connection, site_id: str, manufacturer_id: str, order_id: str,
            resources: Sequence[dict[str, Any]], now: datetime) -> None:
        keys = {(r.get("resourceType"), r.get("id")) for r in resources}
        last = self.batches[-1] if self.batches else None
        if last is None or last.origin != (site_id, manufacturer_id, order_id, now) or keys & last.keys:
            last = _Batch(session, (site_id, manufacturer_id, order_id, now))
            self.batches.append(last)
        last.resources.extend(resources)
        last.keys |= keys


_DEFERRED: ContextVar[_Deferred | None] = ContextVar("cgt_fhir_deferred_writes", default=None)


@contextmanager
def deferred_writes(session: Session) -> Iterator[None]:
    """Within the block, :func:`save_translation` on ``session``'s transaction only queues its
    resources (and returns ``[]``); they are written when the block ends normally, exactly as the
    calls would have written them one after the other (consecutive calls for the same order and time,
    naming no resource twice, in one write: one clock stamp, one read, one batch of writes, the
    version hooks once).  Pending ORM rows are flushed first.

    Why: the clock row (see the module) is locked from the stamp to the commit and serialises every
    FHIR-writing transaction of every process.  Writing at the end of the transaction keeps out of that
    window what the caller does after translating (outbox rows, alerts, identity claims).  Use it only
    around code that does not read back the versions it saves, and end it before the transaction's
    last statements (the audit append) and its commit.  If the block raises, nothing queued is written
    (the caller's transaction rolls back)."""
    deferred = _Deferred(session.connection())
    token = _DEFERRED.set(deferred)
    try:
        yield
    finally:
        _DEFERRED.reset(token)
    if deferred.batches:
        session.flush()  # the ORM's pending rows, before the clock is locked
    for batch in deferred.batches:
        site_id, manufacturer_id, order_id, now = batch.origin
        _save_and_hook(batch.session, site_id, manufacturer_id, order_id, batch.resources, now)


def publish_shared(session: Session | Connection, *, resources: Sequence[dict[str, Any]],
                   now: datetime) -> list[dict[str, Any]]:
    """Store resources every authenticated client may read (types in :data:`PUBLIC_TYPES`, e.g.
    the business-status CodeSystem).  Idempotent: unchanged content writes nothing."""
    for resource in resources:
        if resource.get("resourceType") not in PUBLIC_TYPES:
            raise ValueError(f"{resource.get('resourceType')} is not a shared resource type")
    return _save(_conn(session), resources, now, (), (None, None, None))


@functools.lru_cache(maxsize=64)
def _select_stored(count: int) -> sa.Select[Any]:
    """The current version and the tenants of ``count`` resources in one query (``current LEFT
    JOIN access``; access rows are only ever written with a current row), with a primary-key probe
    per key, ``(type = :t0 AND id = :i0) OR ...``: indexed on SQLite (multi-index OR) and
    PostgreSQL (BitmapOr), where a row-value ``IN (VALUES ...)`` scans the table on SQLite."""
    tenants = _C.outerjoin(_A, sa.and_(_A.c.resource_type == _C.c.resource_type,
                                       _A.c.resource_id == _C.c.resource_id))
    return sa.select(_C.c.resource_type, _C.c.resource_id, _C.c.version_id, _C.c.content_sha256,
                     _A.c.tenant_kind, _A.c.tenant_id).select_from(tenants).where(_probes(_C, count))


_Key = tuple[str, str]
_ENVELOPE = frozenset({"resourceType", "id", "meta"})
_Token = tuple[str, str, str]  # (param, system, value)
_Date = tuple[str, int, int]  # (param, start_us, end_us)


def _key_params(keys: Sequence[_Key]) -> dict[str, str]:
    params = {}
    for n, (rtype, rid) in enumerate(keys):
        params[f"t{n}"], params[f"i{n}"] = rtype, rid
    return params


def _stored_state(rows: Sequence[Any]
                  ) -> tuple[dict[_Key, tuple[int, str]], dict[_Key, set[tuple[str, str]]]]:
    """``(current, seen)``: the latest (version, content hash) and the tenants of each stored key,
    from the rows of :func:`_select_stored`."""
    current: dict[_Key, tuple[int, str]] = {}
    seen: dict[_Key, set[tuple[str, str]]] = {}
    for r in rows:
        key = (r.resource_type, r.resource_id)
        current[key] = (int(r.version_id), r.content_sha256)
        if r.tenant_kind is not None:
            seen.setdefault(key, set()).add((r.tenant_kind, r.tenant_id))
    return current, seen


def _probes(table: sa.Table, count: int) -> Any:
    """``(resource_type = :t0 AND resource_id = :i0) OR ...``: a primary-key probe per key."""
    return sa.or_(*(sa.and_(table.c.resource_type == sa.bindparam(f"t{n}"),
                            table.c.resource_id == sa.bindparam(f"i{n}")) for n in range(count)))


@functools.lru_cache(maxsize=64)
def _select_index(count: int) -> tuple[sa.Select[Any], sa.Select[Any]]:
    """The stored search-index rows (tokens, dates) of ``count`` resources."""
    return (sa.select(_T.c.resource_type, _T.c.resource_id, _T.c.param, _T.c.system, _T.c.value)
            .where(_probes(_T, count)),
            sa.select(_D.c.resource_type, _D.c.resource_id, _D.c.param, _D.c.start_us, _D.c.end_us)
            .where(_probes(_D, count)))


def _stored_index(token_rows: Sequence[Any], date_rows: Sequence[Any]
                  ) -> tuple[dict[_Key, set[_Token]], dict[_Key, set[_Date]]]:
    tokens: dict[_Key, set[_Token]] = {}
    dates: dict[_Key, set[_Date]] = {}
    for r in token_rows:
        tokens.setdefault((r.resource_type, r.resource_id), set()).add((r.param, r.system, r.value))
    for r in date_rows:
        key = (r.resource_type, r.resource_id)
        dates.setdefault(key, set()).add((r.param, int(r.start_us), int(r.end_us)))
    return tokens, dates


def _one(column_type: Any, column_id: Any) -> Any:
    """``resource_type = :k_type AND resource_id = :k_id`` (executed once per key, as executemany)."""
    return sa.and_(column_type == sa.bindparam("k_type"), column_id == sa.bindparam("k_id"))


# Built once; each event runs each of these at most once, as executemany over its resources.
_UPDATE_CURRENT = _C.update().where(_one(_C.c.resource_type, _C.c.resource_id)).values(
    version_id=sa.bindparam("k_version"), last_updated_us=sa.bindparam("k_updated"),
    content_sha256=sa.bindparam("k_sha256"), body=sa.bindparam("k_body"))
_UPDATE_ACCESS = _A.update().where(_one(_A.c.resource_type, _A.c.resource_id)).values(
    last_updated_us=sa.bindparam("k_updated"))
_DELETE_TOKEN = _T.delete().where(  # one index row, by its whole primary key
    _one(_T.c.resource_type, _T.c.resource_id), _T.c.param == sa.bindparam("k_param"),
    _T.c.system == sa.bindparam("k_system"), _T.c.value == sa.bindparam("k_value"))
_DELETE_DATE = _D.delete().where(
    _one(_D.c.resource_type, _D.c.resource_id), _D.c.param == sa.bindparam("k_param"),
    _D.c.start_us == sa.bindparam("k_start"), _D.c.end_us == sa.bindparam("k_end"))
_INSERT_VERSION = _V.insert()
_INSERT_CURRENT = _C.insert()
_INSERT_ACCESS = _A.insert()
_INSERT_TOKEN = _T.insert()
_INSERT_DATE = _D.insert()


def _save(conn: Connection, resources: Sequence[dict[str, Any]], now: datetime,
          tenants: Iterable[tuple[str, str]], origin: tuple[str | None, str | None, str | None]
          ) -> list[dict[str, Any]]:
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for resource in resources:
        rtype, rid = resource.get("resourceType"), resource.get("id")
        if not isinstance(rtype, str) or not isinstance(rid, str) or not rtype or not rid:
            raise ValueError("every resource needs a resourceType and an id")
        latest[(rtype, rid)] = resource  # a later version in the same call wins
    if not latest:
        return []
    tenants = tuple(tenants)
    keys = list(latest)
    params = _key_params(keys)
    # The clock first: locked before reading, so the versions we read are the newest.  On PostgreSQL
    # the stamp, the stored state and the stored search index are read in one round trip (pipelined,
    # still in that order); on SQLite (in process) the index is read below, only for updated resources.
    pipelined = conn.dialect.driver == "psycopg"
    queries: list[tuple[Any, dict[str, Any]]] = [(_NEXT_STAMP, {"now_us": to_us(now)}),
                                                 (_select_stored(len(keys)), params)]
    if pipelined:
        queries.extend((select, params) for select in _select_index(len(keys)))
    found = fetch_rows_all(conn, queries)
    if not found[0]:  # no clock row: recreate it, then read again under its lock
        stamp = _recreate_clock(conn, to_us(now))
        found = [[], *fetch_rows_all(conn, queries[1:])]
    else:
        stamp = int(found[0][0][0])
    current, seen = _stored_state(found[1])
    for key in latest:
        if seen.get(key, set()) - set(tenants):
            raise CrossTenantWrite(f"{key[0]}/{key[1]} belongs to another site or manufacturer; nothing was "
                                   "stored.")
    plan: list[tuple[tuple[str, str], dict[str, Any], str, int | None, list[tuple[str, str]]]] = []
    for key, resource in latest.items():
        row = current.get(key)
        missing = [t for t in tenants if t not in seen.get(key, ())]
        digest = content_hash(resource)
        if row is not None and row[1] == digest and not missing:
            continue
        plan.append((key, resource, digest, None if row is None else row[0], missing))
    if not plan:
        return []
    updated = [key for key, _, _, old_version, _ in plan if old_version is not None]
    if pipelined:
        stored_tokens, stored_dates = _stored_index(found[2], found[3])
    elif updated:
        update_params = _key_params(updated)
        stored_tokens, stored_dates = _stored_index(
            *(fetch_rows(conn, select, update_params) for select in _select_index(len(updated))))
    else:
        stored_tokens, stored_dates = {}, {}
    site_id, manufacturer_id, order_id = origin
    written: list[dict[str, Any]] = []
    versions: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    grants: list[dict[str, Any]] = []
    tokens: list[dict[str, Any]] = []
    dates: list[dict[str, Any]] = []
    stale_tokens: list[dict[str, Any]] = []
    stale_dates: list[dict[str, Any]] = []
    instant = format_instant(stamp)
    for (rtype, rid), resource, digest, old_version, missing in plan:
        version = 1 if old_version is None else old_version + 1
        meta = {**(resource.get("meta") or {}), "versionId": str(version), "lastUpdated": instant}
        stored = {"resourceType": rtype, "id": rid, "meta": meta,
                  **{k: v for k, v in resource.items() if k not in _ENVELOPE}}
        body = orjson.dumps(stored)
        versions.append({"resource_type": rtype, "resource_id": rid, "version_id": version,
                         "last_updated_us": stamp, "body": body, "site_id": site_id,
                         "manufacturer_id": manufacturer_id, "order_id": order_id})
        if old_version is None:
            inserts.append({"resource_type": rtype, "resource_id": rid, "version_id": version,
                            "last_updated_us": stamp, "content_sha256": digest, "body": body})
        else:
            updates.append({"k_type": rtype, "k_id": rid, "k_version": version, "k_updated": stamp,
                            "k_sha256": digest, "k_body": body})
        grants.extend({"resource_type": rtype, "resource_id": rid, "tenant_kind": kind, "tenant_id": tid,
                       "last_updated_us": stamp} for kind, tid in missing)
        # the search index: only the rows whose values changed (an updated Task keeps most of them)
        token_values, date_values = index_values(stored)
        new_tokens = [(p, s[:255], v[:255]) for p, s, v in token_values]
        old_tokens = stored_tokens.get((rtype, rid), set())
        old_dates = stored_dates.get((rtype, rid), set())
        tokens.extend({"resource_type": rtype, "resource_id": rid, "param": p, "system": s, "value": v}
                      for p, s, v in new_tokens if (p, s, v) not in old_tokens)
        dates.extend({"resource_type": rtype, "resource_id": rid, "param": p, "start_us": lo, "end_us": hi}
                     for p, lo, hi in date_values if (p, lo, hi) not in old_dates)
        stale_tokens.extend({"k_type": rtype, "k_id": rid, "k_param": p, "k_system": s, "k_value": v}
                            for p, s, v in old_tokens.difference(new_tokens))
        stale_dates.extend({"k_type": rtype, "k_id": rid, "k_param": p, "k_start": lo, "k_end": hi}
                           for p, lo, hi in old_dates.difference(date_values))
        written.append(stored)
    # only resources with an earlier version can have access rows or index rows to bring up to date
    changed = [{"k_type": rtype, "k_id": rid, "k_updated": stamp}
               for (rtype, rid), _, _, old_version, _ in plan if old_version is not None]
    executemany_all(conn, [  # in this order; on PostgreSQL in one round trip
        (_INSERT_VERSION, versions), (_INSERT_CURRENT, inserts), (_UPDATE_CURRENT, updates),
        (_UPDATE_ACCESS, changed), (_DELETE_TOKEN, stale_tokens), (_DELETE_DATE, stale_dates),
        (_INSERT_ACCESS, grants), (_INSERT_TOKEN, tokens), (_INSERT_DATE, dates)])
    return written
