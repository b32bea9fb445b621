"""Resources every authenticated client may read: our business-status CodeSystem.

The CodeSystem is data in ``terminology/``; the store keeps its versions like any other resource
so read, vread and history work the same way.  It is published into the store when a CodeSystem is
asked for and the stored content differs from the terminology data (the first request, or after
the data changed), so no start-up step is needed; :func:`publish_terminology` is the same step
for callers that prefer to run it eagerly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.store.db import write_session
from gateway.store.fhir import content_hash, publish_shared
from gateway.store.fhir_tables import FhirResourceCurrent

__all__ = ["shared_resources", "publish_terminology", "ensure_published"]

_C = FhirResourceCurrent.__table__  # type: ignore[attr-defined]


def shared_resources(terminology: Any) -> list[dict[str, Any]]:
    return [terminology.business_status_codesystem()]


def publish_terminology(engine: Engine, terminology: Any, now: datetime) -> list[dict[str, Any]]:
    """Store the shared resources if their content changed; returns the versions written."""
    with write_session(engine) as session:
        return publish_shared(session, resources=shared_resources(terminology), now=now)


def ensure_published(context: Any) -> None:
    """Publish the shared resources if the store does not hold their current content (one
    indexed read when it does)."""
    resources = shared_resources(context.terminology)
    keys = [(r["resourceType"], r["id"]) for r in resources]
    with context.engine.connect() as conn:
        stored = set(conn.execute(sa.select(_C.c.content_sha256).where(
            sa.tuple_(_C.c.resource_type, _C.c.resource_id).in_(keys))).scalars())
    if stored != {content_hash(r) for r in resources}:
        publish_terminology(context.engine, context.terminology, context.now())
