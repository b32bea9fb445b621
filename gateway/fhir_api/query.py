"""SQL for search and history over the FHIR store, with keyset paging.

Search walks ``(last_updated, id)``: for an admin the index ``(type, last_updated, id)`` of
``fhir_resource_current``; for a site or manufacturer ``(type, tenant, last_updated, id)`` of
``fhir_resource_access``, so an empty poll (``_lastUpdated=gt<now>``) and a page of 100 are one
index range scan whatever the size of the store.  A page asks for ``count + 1`` rows after the
cursor key; the extra row only says whether there is a next page.

History walks the immutable ``fhir_resource_version`` newest first by
``(last_updated, id, version)``, so its pages cannot shift under concurrent writes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.fhir_api.params import Filter, SearchQuery
from gateway.fhir_store import (
    PUBLIC_TYPES,
    FhirResourceAccess,
    FhirResourceCurrent,
    FhirResourceVersion,
    FhirSearchDate,
    FhirSearchToken,
    Scope,
    StoredVersion,
    visible_clause,
)

__all__ = ["search_page", "search_count", "history_page", "SearchKey", "HistoryKey"]

SearchKey = tuple[int, str]  # (last_updated_us, resource_id)
HistoryKey = tuple[int, str, int]  # (last_updated_us, resource_id, version_id)

_C = FhirResourceCurrent.__table__  # type: ignore[attr-defined]
_A = FhirResourceAccess.__table__  # type: ignore[attr-defined]
_V = FhirResourceVersion.__table__  # type: ignore[attr-defined]
_T = FhirSearchToken.__table__  # type: ignore[attr-defined]
_D = FhirSearchDate.__table__  # type: ignore[attr-defined]


def _date_clause(prefix: str, lo: int, hi: int, start: Any, end: Any) -> Any:
    """Resource range ``[start, end)`` against search range ``[lo, hi)`` (FHIR prefix semantics)."""
    if prefix == "gt":
        return end > hi
    if prefix == "ge":
        return end > lo
    if prefix == "lt":
        return start < lo
    if prefix == "le":
        return start < hi
    return sa.and_(start >= lo, end <= hi)


def _instant_clause(prefix: str, lo: int, hi: int, column: Any) -> Any:
    """:func:`_date_clause` for a point in time (``[t, t + 1 µs)``), written so an index on the
    column serves it: ``_lastUpdated=gt<watermark>`` is one index range."""
    if prefix == "gt":
        return column >= hi
    if prefix == "ge":
        return column >= lo
    if prefix == "lt":
        return column < lo
    if prefix == "le":
        return column < hi
    return sa.and_(column >= lo, column < hi)


def _filter_clause(rtype: str, flt: Filter, id_col: Any, lu_col: Any) -> Any:
    param = flt.param
    if param.name == "_id":
        return id_col.in_([value for _, value in flt.values])
    if param.name == "_lastUpdated":
        return sa.or_(*(_instant_clause(str(p), int(lo), int(hi), lu_col)  # type: ignore[call-overload]
                        for p, lo, hi in flt.values))
    if param.type == "date":
        alternatives = [_date_clause(str(p), int(lo), int(hi), _D.c.start_us, _D.c.end_us)  # type: ignore[call-overload]
                        for p, lo, hi in flt.values]
        return sa.exists().where(_D.c.resource_type == rtype, _D.c.resource_id == id_col,
                                 _D.c.param == param.name, sa.or_(*alternatives))
    alternatives = []
    for system, value in flt.values:
        parts = []
        if system is not None:
            parts.append(_T.c.system == system)
        if value is not None:
            parts.append(_T.c.value == value)
        alternatives.append(sa.and_(*parts))
    return sa.exists().where(_T.c.resource_type == rtype, _T.c.resource_id == id_col,
                             _T.c.param == param.name, sa.or_(*alternatives))


def _base(scope: Scope, query: SearchQuery) -> tuple[Any, Any, Any]:
    """A select of the current rows in scope, plus the (last_updated, id) columns to walk."""
    rtype = query.resource_type
    if scope.kind == "all" or rtype in PUBLIC_TYPES:
        stmt = sa.select(_C.c.resource_id, _C.c.version_id, _C.c.last_updated_us, _C.c.body).where(
            _C.c.resource_type == rtype)
        lu_col, id_col = _C.c.last_updated_us, _C.c.resource_id
    else:
        stmt = (sa.select(_A.c.resource_id, _C.c.version_id, _A.c.last_updated_us, _C.c.body)
                .select_from(_A.join(_C, sa.and_(_C.c.resource_type == _A.c.resource_type,
                                                 _C.c.resource_id == _A.c.resource_id)))
                .where(_A.c.resource_type == rtype, _A.c.tenant_kind == scope.kind,
                       _A.c.tenant_id == scope.tenant_id))
        lu_col, id_col = _A.c.last_updated_us, _A.c.resource_id
    for flt in query.filters:
        stmt = stmt.where(_filter_clause(rtype, flt, id_col, lu_col))
    return stmt, lu_col, id_col


def search_page(conn: Connection, scope: Scope, query: SearchQuery, after: SearchKey | None,
                ) -> tuple[list[StoredVersion], SearchKey | None]:
    """One page of matches after ``after``, and the key to continue from (None on the last page)."""
    stmt, lu_col, id_col = _base(scope, query)
    if after is not None:
        key = sa.tuple_(lu_col, id_col)
        stmt = stmt.where(key < sa.tuple_(*after) if query.descending else key > sa.tuple_(*after))
    order = (lu_col.desc(), id_col.desc()) if query.descending else (lu_col.asc(), id_col.asc())
    rows = conn.execute(stmt.order_by(*order).limit(query.count + 1)).all()
    page = [StoredVersion(query.resource_type, r.resource_id, int(r.version_id), int(r.last_updated_us),
                          bytes(r.body)) for r in rows[: query.count]]
    more = len(rows) > query.count and page
    return page, ((page[-1].last_updated_us, page[-1].resource_id) if more else None)


def search_count(conn: Connection, scope: Scope, query: SearchQuery) -> int:
    stmt, _, _ = _base(scope, query)
    return int(conn.execute(sa.select(sa.func.count()).select_from(stmt.subquery())).scalar_one())


def history_page(conn: Connection, scope: Scope, resource_type: str, resource_id: str | None, *,
                 since_us: int | None, count: int, before: HistoryKey | None,
                 ) -> tuple[list[StoredVersion], HistoryKey | None]:
    """Versions newest first (one resource's, or a whole type's), at or after ``since_us``."""
    stmt = sa.select(_V.c.resource_id, _V.c.version_id, _V.c.last_updated_us, _V.c.body).where(
        _V.c.resource_type == resource_type, visible_clause(scope, resource_type, _V.c.resource_id))
    if resource_id is not None:
        stmt = stmt.where(_V.c.resource_id == resource_id)
    if since_us is not None:
        stmt = stmt.where(_V.c.last_updated_us >= since_us)
    key = sa.tuple_(_V.c.last_updated_us, _V.c.resource_id, _V.c.version_id)
    if before is not None:
        stmt = stmt.where(key < sa.tuple_(*before))
    stmt = stmt.order_by(_V.c.last_updated_us.desc(), _V.c.resource_id.desc(), _V.c.version_id.desc())
    rows = conn.execute(stmt.limit(count + 1)).all()
    page = [StoredVersion(resource_type, r.resource_id, int(r.version_id), int(r.last_updated_us),
                          bytes(r.body)) for r in rows[:count]]
    if len(rows) > count and page:
        last = page[-1]
        return page, (last.last_updated_us, last.resource_id, last.version_id)
    return page, None
