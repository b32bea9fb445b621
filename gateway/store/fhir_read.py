"""Reads of the FHIR resource store, each limited to what a client's scope may see: a resource by
its tenants' access rows (:func:`visible_clause`), and each version by the site and manufacturer of
the order that wrote it too (:func:`version_visible_clause`, for vread and ``_history``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from gateway.store.fhir_tables import FhirResourceAccess, FhirResourceCurrent, FhirResourceVersion
from gateway.store.search_params import format_instant

__all__ = [
    "PUBLIC_TYPES",
    "Scope",
    "StoredVersion",
    "visible_clause",
    "version_visible_clause",
    "read_current",
    "read_version",
    "read_many",
]

PUBLIC_TYPES = frozenset({"CodeSystem"})  # readable by every authenticated client, no tenant rows

_V: sa.Table = FhirResourceVersion.__table__  # type: ignore[attr-defined]
_C: sa.Table = FhirResourceCurrent.__table__  # type: ignore[attr-defined]
_A: sa.Table = FhirResourceAccess.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Scope:
    """Whose resources a reader may see: ``all`` (admin), or one site's or one manufacturer's."""

    kind: Literal["all", "site", "manufacturer"]
    tenant_id: str | None = None


@dataclass(frozen=True)
class StoredVersion:
    resource_type: str
    resource_id: str
    version_id: int
    last_updated_us: int
    body: bytes  # the resource JSON (orjson), meta.versionId/lastUpdated included

    @property
    def last_updated(self) -> str:
        return format_instant(self.last_updated_us)


def visible_clause(scope: Scope, resource_type: str, id_column: Any) -> Any:
    """A SQL condition: the resource ``(resource_type, id_column)`` is visible in ``scope``."""
    if scope.kind == "all" or resource_type in PUBLIC_TYPES:
        return sa.true()
    return sa.exists().where(_A.c.resource_type == resource_type, _A.c.resource_id == id_column,
                             _A.c.tenant_kind == scope.kind, _A.c.tenant_id == scope.tenant_id)


def version_visible_clause(scope: Scope, resource_type: str) -> Any:
    """A SQL condition on ``fhir_resource_version`` rows: the resource is visible in ``scope``
    (:func:`visible_clause`) AND this version was written by an order of the reader's site or
    manufacturer.  Serves vread and every ``_history``."""
    if scope.kind == "all" or resource_type in PUBLIC_TYPES:
        return sa.true()
    own = _V.c.site_id if scope.kind == "site" else _V.c.manufacturer_id
    return sa.and_(own == scope.tenant_id, visible_clause(scope, resource_type, _V.c.resource_id))


def _stored(row: Any, rtype: str | None = None) -> StoredVersion:
    return StoredVersion(rtype or row.resource_type, row.resource_id, int(row.version_id),
                         int(row.last_updated_us), bytes(row.body))


def read_current(conn: Connection, scope: Scope, resource_type: str,
                 resource_id: str) -> StoredVersion | None:
    row = conn.execute(sa.select(_C).where(
        _C.c.resource_type == resource_type, _C.c.resource_id == resource_id,
        visible_clause(scope, resource_type, _C.c.resource_id))).first()
    return None if row is None else _stored(row)


def read_version(conn: Connection, scope: Scope, resource_type: str, resource_id: str,
                 version_id: int) -> StoredVersion | None:
    row = conn.execute(sa.select(_V).where(
        _V.c.resource_type == resource_type, _V.c.resource_id == resource_id, _V.c.version_id == version_id,
        version_visible_clause(scope, resource_type))).first()
    return None if row is None else _stored(row)


def read_many(conn: Connection, scope: Scope, refs: Iterable[tuple[str, str]]) -> list[StoredVersion]:
    """The current versions of ``refs`` visible in ``scope`` (invisible or unknown ones are left out)."""
    by_type: dict[str, set[str]] = {}
    for rtype, rid in refs:
        by_type.setdefault(rtype, set()).add(rid)
    found: list[StoredVersion] = []
    for rtype, ids in sorted(by_type.items()):
        rows = conn.execute(sa.select(_C).where(
            _C.c.resource_type == rtype, _C.c.resource_id.in_(sorted(ids)),
            visible_clause(scope, rtype, _C.c.resource_id)).order_by(_C.c.resource_id))
        found.extend(_stored(row) for row in rows)
    return found
