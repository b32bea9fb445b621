"""Subscriptions as stored: create (with its handshake queued), read, search, delete (``off``), the
``$status`` and ``$events`` views.  Synchronous: the routes run them in the thread pool.

Tenancy: a site sees only its own subscriptions (another site's id answers 404 like an unknown one);
admin sees all.  Events are those of the site's own orders only (the trigger matches on the site that
stored the version).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.context import Context
from gateway.delivery.destinations import subscription_destination
from gateway.delivery.subscription_channel import skip_pending
from gateway.fhir_api.outcome import FhirError
from gateway.store.db import write_session
from gateway.store.fhir_tables import FhirResourceVersion
from gateway.store.subscription_tables import (
    LIVE_STATES,
    SUBSCRIPTION_EVENTS,
    SUBSCRIPTIONS,
    SubscriptionRow,
)
from gateway.store.tables import as_utc
from gateway.subscriptions import notify
from gateway.subscriptions.requests import SubscriptionRequest
from mappings.fhir.model import fhir_instant
from mappings.fhir.subscription import (
    NotificationEvent,
    SubscriptionView,
    notification_bundle,
    status_parameters,
)

__all__ = ["Owner", "view_of", "create", "find", "search", "delete", "status_bundle", "events_bundle"]

_S, _E = SUBSCRIPTIONS, SUBSCRIPTION_EVENTS
_V: sa.Table = FhirResourceVersion.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Owner:
    """Whose subscriptions a caller sees: one site's, or every site's (admin: ``site_id`` None)."""

    site_id: str | None


def view_of(row: Any) -> SubscriptionView:
    return SubscriptionView(
        id=row.id,
        site_id=row.site_id,
        status=row.status,
        topic=row.topic,
        filters=tuple(row.filters or ()),
        endpoint=row.endpoint,
        payload=row.payload,
        content=row.content,
        heartbeat_s=row.heartbeat_s,
        timeout_s=row.timeout_s,
        max_count=row.max_count,
        reason=row.reason,
        error=row.error,
        version_id=row.version_id,
        last_updated=fhir_instant(as_utc(row.updated_at)),
        header_names=tuple(h.split(":", 1)[0].strip() for h in row.headers or ()),
    )


def create(context: Context, site_id: str, request: SubscriptionRequest, created_by: str) -> SubscriptionView:
    """Store a ``requested`` subscription and queue its handshake, in one transaction."""
    now = context.now()
    settings = context.settings
    with write_session(context.engine) as session:
        live = session.execute(
            sa.select(sa.func.count())
            .select_from(_S)
            .where(_S.c.site_id == site_id, _S.c.status.in_(LIVE_STATES))
        ).scalar_one()
        if live >= settings.subscription_max_per_site:
            raise FhirError(
                422,
                "too-costly",
                f"site {site_id} has {live} live subscriptions, the most allowed "
                "(subscription_max_per_site): delete one first",
                expression="Subscription",
            )
        row = SubscriptionRow(
            id=str(uuid.uuid4()),
            site_id=site_id,
            status="requested",
            topic=request.topic,
            filters=[f.text() for f in request.filters],
            endpoint=request.endpoint,
            payload=request.payload,
            content=request.content,
            heartbeat_s=request.heartbeat_s,
            timeout_s=request.timeout_s,
            max_count=request.max_count,
            headers=list(request.headers),
            reason=request.reason,
            created_by=created_by[:200],
            created_at=now,
            updated_at=now,
            next_heartbeat_at=(now + timedelta(seconds=request.heartbeat_s)) if request.heartbeat_s else None,
        )
        session.add(row)
        session.flush()
        notify.handshake(session, row, settings.base_url(), now)
        return view_of(row)


def _select(owner: Owner) -> sa.Select[Any]:
    stmt = sa.select(_S)
    return stmt if owner.site_id is None else stmt.where(_S.c.site_id == owner.site_id)


def find(engine: Engine, owner: Owner, subscription_id: str) -> Any:
    """The row, or 404 (also for another site's subscription)."""
    if len(subscription_id) > 64:
        raise FhirError(404, "not-found", "Subscription is not known")
    with engine.connect() as conn:
        row = conn.execute(_select(owner).where(_S.c.id == subscription_id)).first()
    if row is None:
        raise FhirError(404, "not-found", f"Subscription/{subscription_id} is not known")
    return row


def search(engine: Engine, owner: Owner, status: str | None, limit: int) -> list[Any]:
    stmt = _select(owner).order_by(_S.c.created_at, _S.c.id).limit(limit)
    if status is not None:
        stmt = stmt.where(_S.c.status == status)
    with engine.connect() as conn:
        return list(conn.execute(stmt).all())


def delete(context: Context, owner: Owner, subscription_id: str) -> None:
    """Status ``off``: no more notifications; its queued ones are skipped.  Deleting again is a no-op."""
    now = context.now()
    find(context.engine, owner, subscription_id)
    with write_session(context.engine) as session:
        conn = session.connection()
        done = conn.execute(
            _S.update()
            .where(_S.c.id == subscription_id, _S.c.status != "off")
            .values(status="off", version_id=_S.c.version_id + 1, updated_at=now, next_heartbeat_at=None)
        )
        if done.rowcount:
            skip_pending(
                conn, subscription_destination(subscription_id), "subscription deleted (status off)", now
            )


def status_bundle(context: Context, row: Any) -> dict[str, Any]:
    """``$status``: a searchset Bundle holding the SubscriptionStatus (type ``query-status``)."""
    base = context.settings.base_url()
    url = notify.subscription_url(base, row.id)
    params = status_parameters(
        parameters_id=str(uuid.uuid4()),
        subscription_url=url,
        topic=row.topic,
        status=row.status,
        notification_type="query-status",
        events_since_start=row.events_since_start,
        error=row.error,
    )
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "timestamp": fhir_instant(context.now()),
        "entry": [{"fullUrl": f"urn:uuid:{params['id']}", "resource": params, "search": {"mode": "match"}}],
    }


def events_bundle(context: Context, row: Any, since: int | None, until: int | None) -> dict[str, Any]:
    """``$events``: the stored events ``since``..``until`` (inclusive, at most a page), as a history
    Bundle whose status (type ``query-event``) lists them; the focus entries follow the content level
    (full-resource: the version each event announced)."""
    page = context.settings.subscription_events_page_max
    last = int(row.events_since_start)
    until = last if until is None else min(until, last)
    since = max(1, until - page + 1) if since is None else since
    until = min(until, since + page - 1)
    base = context.settings.base_url()
    with context.engine.connect() as conn:
        events = conn.execute(
            sa.select(_E)
            .where(_E.c.subscription_id == row.id, _E.c.event_number >= since, _E.c.event_number <= until)
            .order_by(_E.c.event_number)
        ).all()
        bodies: dict[tuple[str, str, int], dict[str, Any]] = {}
        if row.content == "full-resource":
            for e in events:
                body = conn.execute(
                    sa.select(_V.c.body).where(
                        _V.c.resource_type == e.focus_type,
                        _V.c.resource_id == e.focus_id,
                        _V.c.version_id == e.focus_version,
                    )
                ).scalar()
                if body is not None:
                    bodies[(e.focus_type, e.focus_id, e.focus_version)] = orjson.loads(body)
    url = notify.subscription_url(base, row.id)
    listed: list[NotificationEvent] = []
    focus: list[tuple[str, dict[str, Any] | None]] = []
    for e in events:
        focus_url = f"{base}/fhir/{e.focus_type}/{e.focus_id}"
        listed.append(
            NotificationEvent(
                int(e.event_number),
                fhir_instant(as_utc(e.occurred_at)),
                None if row.content == "empty" else focus_url,
            )
        )
        if row.content != "empty":
            focus.append(
                (
                    f"{focus_url}/_history/{e.focus_version}"
                    if row.content == "full-resource"
                    else focus_url,
                    bodies.get((e.focus_type, e.focus_id, e.focus_version)),
                )
            )
    params = status_parameters(
        parameters_id=str(uuid.uuid4()),
        subscription_url=url,
        topic=row.topic,
        status=row.status,
        notification_type="query-event",
        events_since_start=last,
        events=listed,
        with_topic=row.content != "empty",
    )
    return notification_bundle(
        bundle_id=str(uuid.uuid4()),
        timestamp=fhir_instant(context.now()),
        status=params,
        status_url=f"{url}/$events",
        focus=focus,
    )
