"""Notifications: the handshake, heartbeat and event-notification Bundles queued on a subscription's
outbox destination, and the trigger that turns stored FHIR versions into events.

**The trigger** (:func:`on_versions`, registered per database by :func:`install`) runs inside
:func:`gateway.store.fhir.save_translation`, in the transaction that stores the versions: for each new
version of a Task or a Flag that is an event of a topic (:func:`mappings.fhir.subscription.topic_of_change`:
the version before it is read from the store), each live subscription of the *same site* on that
topic whose filters match gets the next event number (``events_since_start + 1``, one ``UPDATE``
that locks the subscription's row), an event row (for ``$events``) and one outbox row.  A replay
writes no version, so it notifies nothing; one change is one event per subscription.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Session

from gateway.config import Settings
from gateway.delivery.destinations import subscription_destination
from gateway.delivery.outbox import NewMessage, enqueue
from gateway.store import version_hooks
from gateway.store.fhir_tables import FhirResourceVersion
from gateway.store.subscription_tables import LIVE_STATES, SUBSCRIPTION_EVENTS, SUBSCRIPTIONS
from mappings.fhir.model import fhir_instant
from mappings.fhir.subscription import (
    TOPICS,
    Filter,
    NotificationEvent,
    matches_filters,
    notification_bundle,
    notification_id,
    parse_filter,
    status_parameters,
    topic_of_change,
)

__all__ = ["install", "on_versions", "handshake", "heartbeat", "event_bundle", "subscription_url"]

log = logging.getLogger("cgt_gateway.subscriptions")
_S, _E = SUBSCRIPTIONS, SUBSCRIPTION_EVENTS
_V: sa.Table = FhirResourceVersion.__table__  # type: ignore[attr-defined]
_HOOK = "subscriptions"
_NEXT_NUMBER = (
    _S.update()
    .where(_S.c.id == sa.bindparam("sid"))
    .values(events_since_start=_S.c.events_since_start + 1)
    .returning(_S.c.events_since_start)
)


def subscription_url(base: str, subscription_id: str) -> str:
    return f"{base}/fhir/Subscription/{subscription_id}"


def _message(row: Any, kind: str, number: int, bundle: dict[str, Any]) -> NewMessage:
    return NewMessage(
        destination=subscription_destination(row.id),
        channel="subscription",
        control_id=notification_id(row.id, kind, number),
        message_type=kind,
        content_type=row.payload,
        payload=orjson.dumps(bundle).decode(),
    )


def _bundle(
    row: Any,
    base: str,
    kind: str,
    number: int,
    status: str,
    now: datetime,
    events: Sequence[NotificationEvent] = (),
    focus: Sequence[tuple[str, dict[str, Any] | None]] = (),
    error: str | None = None,
) -> dict[str, Any]:
    url = subscription_url(base, row.id)
    bundle_id = notification_id(row.id, kind, number)
    params = status_parameters(
        parameters_id=notification_id(row.id, f"{kind}-status", number),
        subscription_url=url,
        topic=row.topic,
        status=status,
        notification_type=kind,
        events_since_start=row.events_since_start if kind != "event-notification" else number,
        events=events,
        with_topic=row.content != "empty",
        error=error,
    )
    return notification_bundle(
        bundle_id=bundle_id,
        timestamp=fhir_instant(now),
        status=params,
        status_url=f"{url}/$status",
        focus=focus,
    )


def handshake(session: Session, row: Any, base: str, now: datetime) -> None:
    """Queue the handshake (first in the subscription's FIFO queue)."""
    bundle = _bundle(row, base, "handshake", 0, "requested", now)
    enqueue(
        session,
        [_message(row, "handshake", 0, bundle)],
        site_id=row.site_id,
        manufacturer_id="",
        order_id="",
        event_id="subscription-handshake",
        now=now,
    )


def heartbeat(session: Session, row: Any, base: str, now: datetime, number: int) -> None:
    bundle = _bundle(row, base, "heartbeat", number, row.status, now)
    enqueue(
        session,
        [_message(row, "heartbeat", number, bundle)],
        site_id=row.site_id,
        manufacturer_id="",
        order_id="",
        event_id="subscription-heartbeat",
        now=now,
    )


def event_bundle(
    row: Any, base: str, number: int, occurred: str, focus_version: dict[str, Any], now: datetime, status: str
) -> dict[str, Any]:
    """An event-notification Bundle (``content``: empty, id-only or full-resource)."""
    focus_url = f"{base}/fhir/{focus_version['resourceType']}/{focus_version['id']}"
    content = row.content
    event = NotificationEvent(number, occurred, None if content == "empty" else focus_url)
    focus: list[tuple[str, dict[str, Any] | None]] = []
    if content != "empty":
        focus.append((focus_url, focus_version if content == "full-resource" else None))
    return _bundle(row, base, "event-notification", number, status, now, [event], focus)


def _filters(row: Any) -> list[Filter] | None:
    parsed = [parse_filter(text, TOPICS[row.topic]) for text in row.filters or ()]
    return None if any(isinstance(p, str) for p in parsed) else [p for p in parsed if isinstance(p, Filter)]


def _previous(conn: Connection, version: dict[str, Any]) -> dict[str, Any] | None:
    number = int((version.get("meta") or {}).get("versionId") or 1)
    if number <= 1:
        return None
    body = conn.execute(
        sa.select(_V.c.body).where(
            _V.c.resource_type == version["resourceType"],
            _V.c.resource_id == version["id"],
            _V.c.version_id == number - 1,
        )
    ).scalar()
    return None if body is None else orjson.loads(body)


def on_versions(settings: Settings, written: version_hooks.StoredVersions) -> None:
    """The trigger (see the module): runs in the transaction that stored ``written.versions``."""
    candidates = [v for v in written.versions if v.get("resourceType") in ("Task", "Flag")]
    if not candidates:
        return
    session = written.session
    conn = session.connection() if isinstance(session, Session) else session
    subscriptions = conn.execute(
        sa.select(_S).where(_S.c.site_id == written.site_id, _S.c.status.in_(LIVE_STATES))
    ).all()
    if not subscriptions:
        return
    orm = session if isinstance(session, Session) else Session(bind=conn)
    base = settings.base_url()
    for version in candidates:
        topic = topic_of_change(version, _previous(conn, version))
        if topic is None:
            continue
        for row in subscriptions:
            filters = _filters(row)
            if row.topic != topic or filters is None or not matches_filters(version, filters):
                continue
            number = int(conn.execute(_NEXT_NUMBER, {"sid": row.id}).scalar_one())
            occurred = (version.get("meta") or {}).get("lastUpdated") or fhir_instant(written.now)
            conn.execute(
                _E.insert().values(
                    subscription_id=row.id,
                    event_number=number,
                    topic=topic,
                    focus_type=version["resourceType"],
                    focus_id=version["id"],
                    focus_version=int(version["meta"]["versionId"]),
                    occurred_at=written.now,
                )
            )
            bundle = event_bundle(row, base, number, occurred, version, written.now, row.status)
            enqueue(
                orm,
                [_message(row, "event-notification", number, bundle)],
                site_id=written.site_id,
                manufacturer_id=written.manufacturer_id,
                order_id=written.order_id,
                event_id=f"subscription-event-{number}"[:64],
                now=written.now,
            )
            log.info(
                "subscription event queued",
                extra={"subscription_id": row.id, "topic": topic, "event_number": number},
            )
    if orm is not session:
        orm.flush()


def install(engine: Any, settings: Settings) -> None:
    """Register the trigger for ``engine``'s database (bootstrap and the ``listen`` command call it)."""
    version_hooks.register(engine, _HOOK, lambda written: on_versions(settings, written))
