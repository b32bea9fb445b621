"""SQL for search and history over the FHIR store, with keyset paging.

Search walks ``(last_updated, id)``: for an admin the index ``(type, last_updated, id)`` of
``fhir_resource_current``; for a site or manufacturer ``(type, tenant, last_updated, id)`` of
``fhir_resource_access``, so an empty poll (``_lastUpdated=gt<now>``) and a page of 100 are one
index range scan whatever the size of the store.  A page asks for ``count + 1`` rows after the
cursor key; the extra row only says whether there is a next page.  Each search statement is built
once per shape (resource type, scope kind, which filters with which prefixes) with every value a
bound parameter, so a poll costs no SQL construction or compilation after the first, and runs on
the DB-API cursor (:mod:`gateway.store.prepared_sql`).

History walks the immutable ``fhir_resource_version`` newest first by
``(last_updated, id, version)``, so its pages cannot shift under concurrent writes.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.fhir_api.params import Filter, SearchQuery
from gateway.store.fhir_read import PUBLIC_TYPES, Scope, StoredVersion, version_visible_clause
from gateway.store.fhir_tables import (
    FhirResourceAccess,
    FhirResourceCurrent,
    FhirResourceVersion,
    FhirSearchDate,
    FhirSearchToken,
)
from gateway.store.prepared_sql import fetch_all
from gateway.store.search_params import SEARCH_PARAMS
from gateway.store.statement_cache import BoundedCache

__all__ = ["search_page", "search_count", "history_page", "SearchKey", "HistoryKey", "PAGE_STATEMENTS",
           "COUNT_STATEMENTS"]

SearchKey = tuple[int, str]  # (last_updated_us, resource_id)
HistoryKey = tuple[int, str, int]  # (last_updated_us, resource_id, version_id)

_C = FhirResourceCurrent.__table__  # type: ignore[attr-defined]
_A = FhirResourceAccess.__table__  # type: ignore[attr-defined]
_V = FhirResourceVersion.__table__  # type: ignore[attr-defined]
_T = FhirSearchToken.__table__  # type: ignore[attr-defined]
_D = FhirSearchDate.__table__  # type: ignore[attr-defined]


def _date_clause(prefix: str, lo: Any, hi: Any, start: Any, end: Any) -> Any:
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


def _instant_clause(prefix: str, lo: Any, hi: Any, column: Any) -> Any:
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


def _bucket(n: int) -> int:
    """The number of bound slots for ``n`` values: the next power of two, so that a statement's text
    depends on how many values a filter has only through a handful of sizes (1, 2, 4, ... 128)."""
    return 1 << (n - 1).bit_length()


def _groups(flt: Filter) -> list[tuple[object, list[tuple[object, ...]]]]:
    """The filter's distinct alternatives grouped by what of them changes the SQL text: ``_id`` one
    group; a date by prefix; a token or reference by which of (system, value) it constrains.  Groups
    and their values in a fixed order, so equal filters get equal shapes and binds."""
    groups: dict[object, list[tuple[object, ...]]] = {}
    for value in dict.fromkeys(flt.values):  # OR of duplicates: the same filter
        if flt.param.name == "_id":
            kind: object = "id"
        elif flt.param.type == "date":
            kind = str(value[0])
        else:
            kind = (value[0] is not None, value[1] is not None)
        groups.setdefault(kind, []).append(value)
    return sorted(groups.items(), key=lambda item: repr(item[0]))


def _filter_shape(flt: Filter) -> tuple[object, ...]:
    """What of a filter changes the SQL text: its parameter, and per group of alternatives
    (:func:`_groups`) the group and its bucketed size (:func:`_bucket`)."""
    return (flt.param.name, tuple((kind, _bucket(len(values))) for kind, values in _groups(flt)))


def _filter_binds(i: int, flt: Filter, binds: dict[str, Any]) -> None:
    """The bound values of filter ``i``, named as :func:`_filter_clause` names its parameters; each
    group is padded to its bucket by repeating its last value (an OR of a repeat changes nothing)."""
    for g, (_kind, values) in enumerate(_groups(flt)):
        padded = values + [values[-1]] * (_bucket(len(values)) - len(values))
        for j, value in enumerate(padded):
            name = f"f{i}_{g}_{j}"
            if flt.param.name == "_id":
                binds[name] = value[1]
            elif flt.param.type == "date":
                binds[f"{name}_lo"], binds[f"{name}_hi"] = value[1], value[2]
            else:
                if value[0] is not None:
                    binds[f"{name}_s"] = value[0]
                if value[1] is not None:
                    binds[f"{name}_v"] = value[1]


def _bp(name: str) -> Any:
    return sa.bindparam(name)


def _filter_clause(rtype: str, i: int, shape: tuple[Any, ...], id_col: Any, lu_col: Any) -> Any:
    name, groups = shape
    if name == "_id":
        ((_, size),) = groups
        return id_col.in_([_bp(f"f{i}_0_{j}") for j in range(size)])
    param = SEARCH_PARAMS[rtype][name]
    alternatives = []
    for g, (kind, size) in enumerate(groups):
        slots = [f"f{i}_{g}_{j}" for j in range(size)]
        if name == "_lastUpdated":
            alternatives += [_instant_clause(kind, _bp(f"{s}_lo"), _bp(f"{s}_hi"), lu_col) for s in slots]
        elif param.type == "date":
            alternatives += [_date_clause(kind, _bp(f"{s}_lo"), _bp(f"{s}_hi"), _D.c.start_us, _D.c.end_us)
                             for s in slots]
        elif kind == (False, True):
            alternatives.append(_T.c.value.in_([_bp(f"{s}_v") for s in slots]))
        elif kind == (True, False):
            alternatives.append(_T.c.system.in_([_bp(f"{s}_s") for s in slots]))
        else:
            alternatives += [sa.and_(_T.c.system == _bp(f"{s}_s"), _T.c.value == _bp(f"{s}_v"))
                             for s in slots]
    if name == "_lastUpdated":
        return sa.or_(*alternatives)
    if param.type == "date":
        return sa.exists().where(_D.c.resource_type == rtype, _D.c.resource_id == id_col,
                                 _D.c.param == name, sa.or_(*alternatives))
    return sa.exists().where(_T.c.resource_type == rtype, _T.c.resource_id == id_col,
                             _T.c.param == name, sa.or_(*alternatives))


def _shape_weight(shape: tuple[Any, ...]) -> int:
    """About the number of bound parameters of a shape's statement (its cache weight)."""
    _rtype, _scoped, filters = shape
    return 4 + sum(2 * int(size) for _name, groups in filters for _kind, size in groups)


# (resource type, walks the access rows, filter shapes); then (descending, after a key or not)
_Shape = tuple[str, bool, tuple[tuple[object, ...], ...]]


def _base(shape: _Shape) -> tuple[Any, Any, Any]:
    """A select of the current rows in scope, plus the (last_updated, id) columns to walk."""
    rtype, scoped, filters = shape
    if not scoped:
        stmt = sa.select(_C.c.resource_id, _C.c.version_id, _C.c.last_updated_us, _C.c.body).where(
            _C.c.resource_type == rtype)
        lu_col, id_col = _C.c.last_updated_us, _C.c.resource_id
    else:
        stmt = (sa.select(_A.c.resource_id, _C.c.version_id, _A.c.last_updated_us, _C.c.body)
                .select_from(_A.join(_C, sa.and_(_C.c.resource_type == _A.c.resource_type,
                                                 _C.c.resource_id == _A.c.resource_id)))
                .where(_A.c.resource_type == rtype, _A.c.tenant_kind == _bp("tenant_kind"),
                       _A.c.tenant_id == _bp("tenant_id")))
        lu_col, id_col = _A.c.last_updated_us, _A.c.resource_id
    for i, filter_shape in enumerate(filters):
        stmt = stmt.where(_filter_clause(rtype, i, filter_shape, id_col, lu_col))
    return stmt, lu_col, id_col


# Statements by shape: at most 256 of each kind, holding about 8192 bound parameters in all (a poll's
# shape weighs about 10; the largest shape the search limits allow, 50 parameters of 128 slots, is
# built for its request and never kept).  Measured: about 20 MB each when full.
PAGE_STATEMENTS: BoundedCache[Any] = BoundedCache(max_entries=256, max_weight=8_192)
COUNT_STATEMENTS: BoundedCache[Any] = BoundedCache(max_entries=256, max_weight=8_192)


def _page_statement(shape: _Shape, descending: bool, after: bool) -> Any:
    """The page query of one shape, built once (while cached): every value is a bound parameter."""
    return PAGE_STATEMENTS.get_or_build((shape, descending, after),
                                        lambda: _build_page_statement(shape, descending, after),
                                        lambda _: _shape_weight(shape))


def _build_page_statement(shape: _Shape, descending: bool, after: bool) -> Any:
    stmt, lu_col, id_col = _base(shape)
    if after:
        key = sa.tuple_(lu_col, id_col)
        bound = sa.tuple_(_bp("after_lu"), _bp("after_id"))
        stmt = stmt.where(key < bound if descending else key > bound)
    order = (lu_col.desc(), id_col.desc()) if descending else (lu_col.asc(), id_col.asc())
    return stmt.order_by(*order).limit(sa.bindparam("limit", type_=sa.Integer))


def _count_statement(shape: _Shape) -> Any:
    return COUNT_STATEMENTS.get_or_build(shape, lambda: _build_count_statement(shape),
                                         lambda _: _shape_weight(shape))


def _build_count_statement(shape: _Shape) -> Any:
    stmt, _, _ = _base(shape)
    return sa.select(sa.func.count()).select_from(stmt.subquery())


def _shape_and_binds(scope: Scope, query: SearchQuery) -> tuple[_Shape, dict[str, Any]]:
    scoped = not (scope.kind == "all" or query.resource_type in PUBLIC_TYPES)
    binds: dict[str, Any] = {}
    if scoped:
        binds["tenant_kind"], binds["tenant_id"] = scope.kind, scope.tenant_id
    # AND is commutative: filters in a fixed order, so their order in the request makes no new shape
    filters = sorted(query.filters, key=lambda flt: repr(_filter_shape(flt)))
    for i, flt in enumerate(filters):
        _filter_binds(i, flt, binds)
    shape = (query.resource_type, scoped, tuple(_filter_shape(flt) for flt in filters))
    return shape, binds


def search_page(conn: Connection, scope: Scope, query: SearchQuery, after: SearchKey | None,
                ) -> tuple[list[StoredVersion], SearchKey | None]:
    """One page of matches after ``after``, and the key to continue from (None on the last page)."""
    shape, binds = _shape_and_binds(scope, query)
    binds["limit"] = query.count + 1
    if after is not None:
        binds["after_lu"], binds["after_id"] = after
    rows = fetch_all(conn, _page_statement(shape, query.descending, after is not None), binds)
    rtype = query.resource_type
    page = [StoredVersion(rtype, r[0], int(r[1]), int(r[2]), bytes(r[3])) for r in rows[: query.count]]
    more = len(rows) > query.count and page
    return page, ((page[-1].last_updated_us, page[-1].resource_id) if more else None)


def search_count(conn: Connection, scope: Scope, query: SearchQuery) -> int:
    shape, binds = _shape_and_binds(scope, query)
    return int(fetch_all(conn, _count_statement(shape), binds)[0][0])


def history_page(conn: Connection, scope: Scope, resource_type: str, resource_id: str | None, *,
                 since_us: int | None, count: int, before: HistoryKey | None,
                 ) -> tuple[list[StoredVersion], HistoryKey | None]:
    """Versions newest first (one resource's, or a whole type's), at or after ``since_us``."""
    stmt = sa.select(_V.c.resource_id, _V.c.version_id, _V.c.last_updated_us, _V.c.body).where(
        _V.c.resource_type == resource_type, version_visible_clause(scope, resource_type))
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
