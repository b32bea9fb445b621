"""Replay an order and its events through the lifecycle without a database (preview, goldens, tests).

Mirrors what intake decides for each event: the data must validate for its type, a DIN is put in
its ISBT 128 normal form, the event's CoI must match the order's, and ``gateway.intake.lifecycle.decide``
accepts (possibly as late) or refuses.  Refused events are reported and leave the order unchanged,
exactly as the API would answer 409/422 and store nothing.  Times come from the inputs: the order is
placed at ``placed_at`` and each event is accepted at ``max(occurred_at, previous acceptance)``.

Plausible times (:mod:`mappings.plausible_times`) apply against that same replay clock, not the wall
clock: a case file replays the journey as if each event were posted when it was accepted, so a
historical case stays valid forever.  Against that clock ``occurred_at`` is never ahead, but a data
time that happened (``collected_at``, ...) more than ``max_future_skew_s`` after the event's
acceptance, a planned time more than ``max_plan_ahead_days`` ahead of it, and any time before
``min_event_year`` are refused ``validation-failed`` as at intake.  The order's requested dates are
not checked here (intake checks them against its clock when the order is placed).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydantic import ValidationError

from gateway.config import ProductConfig, Settings
from gateway.errors import GatewayError, ValidationFailed
from gateway.intake.coi import normalize_din_field, normalize_product_coi
from gateway.intake.lifecycle import decide, initial_state
from gateway.intake.plausibility import check_event_times
from gateway.profile_limits import template_limits
from mappings.domain import EventType
from mappings.events import CollectionCompletedData, EventIn, EventRecord
from mappings.orders import OrderIn
from mappings.preview import JourneyStep, PreviewStep, Refusal, preview
from mappings.profile.schema import SiteProfile
from mappings.snapshot import ManufacturerRef, OrderSnapshot, ProductRef, SiteRef
from terminology import Terminology

__all__ = ["replay_journey", "preview_order", "UnknownProduct"]


class UnknownProduct(ValidationFailed):
    code = "unknown-product"


def _refusal(error: GatewayError) -> Refusal:
    return Refusal(error.code, error.detail, tuple((e.pointer, e.reason) for e in error.errors))


def _product(settings: Settings, order: OrderIn) -> tuple[ManufacturerRef, ProductConfig]:
    owner = settings.product_owner(order.product_code)
    manufacturer = settings.manufacturer(owner) if owner else None
    product = settings.product(owner, order.product_code) if owner else None
    if manufacturer is None or product is None:
        raise UnknownProduct(f"no configured manufacturer makes product {order.product_code!r}")
    return ManufacturerRef(id=manufacturer.id, name=manufacturer.name), product


def replay_journey(
    settings: Settings,
    order: OrderIn,
    events: Sequence[EventIn],
    *,
    placed_at: datetime,
    site_name: str | None = None,
) -> list[JourneyStep]:
    """One :class:`JourneyStep` for ``order.placed`` and one per event, in the given order.

    Raises :class:`UnknownProduct` or ``CoiError`` when the order itself would be refused.
    """
    manufacturer, product = _product(settings, order)
    coi = normalize_product_coi(order.coi, product.coi_format, product.coi_pattern)
    site = settings.site(order.site_id)
    snapshot = OrderSnapshot(
        order=order,
        coi=coi,
        manufacturer=manufacturer,
        product=ProductRef(
            code=product.code, name=product.name, autologous=product.autologous, coi_format=product.coi_format
        ),
        site=SiteRef(id=order.site_id, name=site.name if site else (site_name or order.site_id)),
        status=initial_state(placed_at).status,
        created_at=placed_at,
        events=(),
    )
    state = initial_state(placed_at)
    placed = EventRecord(
        event_id=f"{order.order_id}:placed",
        type=EventType.order_placed,
        occurred_at=placed_at,
        coi=coi,
        data={},
        sequence=0,
        accepted_at=placed_at,
        late=False,
        status_after=state.status,
    )
    snapshot = snapshot.model_copy(update={"events": (placed,)})
    steps = [JourneyStep(placed.event_id, placed.type, snapshot, placed)]
    accepted_at = placed_at
    for event in events:
        try:
            typed = event.typed_data()
            if isinstance(typed, CollectionCompletedData) and typed.din is not None:
                typed = typed.model_copy(update={"din": normalize_din_field(typed.din, "/data/din")})
            if normalize_product_coi(event.coi, product.coi_format, product.coi_pattern) != coi:
                raise GatewayError(
                    "The event's CoI does not match the order's; nothing was changed.",
                    code="coi-mismatch",
                    status=422,
                )
            check_event_times(settings, event, typed, max(accepted_at, event.occurred_at))
            decision = decide(state, event.type, event.occurred_at, typed, autologous=product.autologous)
        except ValidationError as exc:
            errors = tuple((f"/data/{'/'.join(str(p) for p in e['loc'])}", e["msg"]) for e in exc.errors())
            steps.append(
                JourneyStep(
                    event.event_id,
                    event.type,
                    refusal=Refusal("validation-failed", f"data is not valid for {event.type}", errors),
                )
            )
            continue
        except GatewayError as exc:
            steps.append(JourneyStep(event.event_id, event.type, refusal=_refusal(exc)))
            continue
        state = decision.state
        accepted_at = max(accepted_at, event.occurred_at)
        record = EventRecord(
            event_id=event.event_id,
            type=event.type,
            occurred_at=event.occurred_at,
            coi=coi,
            data=typed.model_dump(mode="json", exclude_none=True),
            sequence=len(snapshot.events),
            accepted_at=accepted_at,
            late=decision.late,
            status_after=state.status,
        )
        snapshot = snapshot.model_copy(update={"status": state.status, "events": (*snapshot.events, record)})
        steps.append(JourneyStep(event.event_id, event.type, snapshot, record))
    return steps


def preview_order(
    settings: Settings,
    profile: SiteProfile,
    order: OrderIn,
    events: Sequence[EventIn],
    terminology: Terminology,
    *,
    now: datetime,
    placed_at: datetime | None = None,
) -> list[PreviewStep]:
    """The preview of ``order`` and ``events`` for ``profile`` (placed at ``placed_at``, default ``now``)."""
    return preview(
        profile,
        order,
        events,
        terminology,
        now=now,
        template_limits=template_limits(settings),
        replay=lambda o, e: replay_journey(
            settings, o, e, placed_at=placed_at or now, site_name=profile.name
        ),
    )
