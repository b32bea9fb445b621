"""The heart of the gateway: order + accepted event + site profile -> FHIR resources and HL7v2 messages.

``translate`` is pure (no database, network or clock).  It returns the current version of every
resource the order consists of as of the event (ServiceRequest, Task, Patient, Organizations,
Practitioner, BiologicallyDerivedProducts) plus the Observations and Provenance born from the event
itself; the store keeps a new version only when content changed, so replaying an event writes
nothing.  Ids derive from business identifiers; every time comes from the events, never from
``now``.  Mapping problems become :class:`~mappings.result.MappingIssue` s, never exceptions.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mappings.domain import EventType
from mappings.event_data import typed_data
from mappings.events import (
    ApheresisRescheduledData,
    ApheresisScheduledData,
    EventRecord,
    InfusionScheduledData,
    ManufacturingCompletedData,
    OrderConfirmedData,
    ShipmentDispatchedData,
)
from mappings.fhir.model import fhir_date, fhir_instant
from mappings.fhir.order import Period, TaskInput, build_service_request, build_task, site_order_identifier
from mappings.fhir.parties import build_organization, build_patient, build_practitioner, identifier
from mappings.hl7v2.render import render_messages
from mappings.ids import MANUFACTURER_SYSTEM, SITE_SYSTEM, reference
from mappings.profile.schema import SiteProfile
from mappings.profile.templates import TemplateLimits
from mappings.result import Hl7Message, MappingIssue, Translation
from mappings.snapshot import OrderSnapshot
from mappings.task_status import TERMINAL_STATUSES, status_row
from mappings.translate_journey import Journey
from mappings.translate_products import build_event_resources, build_products, product_coding
from terminology import Terminology

__all__ = ["translate"]

_NOT_TASK_CHANGES = frozenset({EventType.custody_transferred})


def translate(
    order: OrderSnapshot, event: EventRecord, profile: SiteProfile, terminology: Terminology, now: datetime,
    *, template_limits: TemplateLimits | None = None,
) -> Translation:
    """Translate one accepted ``event`` of ``order`` for the site described by ``profile``.

    ``now`` is not used for any FHIR field (all times come from the events, so replays are
    identical); it is passed on to the HL7v2 renderer (``mappings.hl7v2.render.render_messages``).
    Event data that no longer validates is an ``error`` issue: the order resources are still
    returned, nothing event-specific and no HL7v2 message.  ``template_limits`` bound the
    profile's override templates (the gateway passes its ``template_*`` settings; default: the
    settings' defaults).
    """
    journey = Journey(order, event, profile)
    issues: list[MappingIssue] = list(journey.issues)
    valid_data = typed_data(event) is not None
    if not valid_data:
        issues.append(
            MappingIssue(
                "error",
                "invalid-event-data",
                "event.data",
                f"data does not validate for {event.type.value}; only the order is updated",
            )
        )
    resources = _parties(journey)
    service_request, found = _service_request(journey)
    issues += found
    task, found = _task(journey, terminology)
    issues += found
    resources += [service_request, task, *build_products(journey)]
    event_resources, found = build_event_resources(journey, terminology)
    resources += event_resources
    issues += found
    messages: tuple[Hl7Message, ...] = ()
    if valid_data:
        messages, hl7_issues = render_messages(order, event, profile, terminology, now,
                                                template_limits=template_limits)
        issues += hl7_issues
    return Translation(
        resources=tuple(resources),
        messages=messages,
        issues=tuple(issues),
        profile_version=profile.version,
        extra={
            "service_request_id": journey.service_request_id,
            "task_id": journey.task_id,
            "patient_id": journey.patient_id,
        },
    )


def _parties(journey: Journey) -> list[dict[str, Any]]:
    snapshot, profile = journey.snapshot, journey.profile
    version = profile.version
    return [
        build_organization(
            journey.manufacturer_org_id,
            name=snapshot.manufacturer.name,
            profile_version=version,
            identifiers=[identifier(MANUFACTURER_SYSTEM, snapshot.manufacturer.id)],
        ),
        build_organization(
            journey.site_org_id,
            name=profile.name,
            profile_version=version,
            identifiers=[identifier(SITE_SYSTEM, snapshot.site.id)]
            + [identifier(i.system, i.value) for i in profile.organization_identifiers],
        ),
        build_practitioner(
            journey.practitioner_id, snapshot.order.ordering_provider, profile_version=version
        ),
        build_patient(
            journey.patient_id,
            snapshot.order.patient,
            mrn_system=profile.patient.mrn_system,
            demographics=profile.patient.demographics == "full",
            profile_version=version,
        ),
    ]


def _order_identifiers(journey: Journey) -> list[dict[str, Any]]:
    order_id = journey.snapshot.order.order_id
    systems = journey.profile.orders
    identifiers = [
        identifier(systems.placer_system, order_id, "PLAC"),
        identifier(systems.filler_system, order_id, "FILL"),
    ]
    if journey.snapshot.site_order_number:
        identifiers.append(site_order_identifier(journey.profile, journey.snapshot.site_order_number))
    return identifiers


def _authored_on(journey: Journey) -> str:
    placed = journey.first(EventType.order_placed)
    return fhir_instant(placed.occurred_at if placed else journey.snapshot.created_at)


def _service_request(journey: Journey) -> tuple[dict[str, Any], list[MappingIssue]]:
    snapshot, profile = journey.snapshot, journey.profile
    issues = []
    codings = []
    mapping = profile.products.get(snapshot.product.code)
    if mapping is None:
        issues.append(
            MappingIssue(
                "error",
                "unmapped-product",
                f"profile.products.{snapshot.product.code}",
                "the site profile has no local orderable for this product; "
                "sent with the manufacturer's code only",
            )
        )
    else:
        if mapping.manufacturer and mapping.manufacturer != snapshot.manufacturer.id:
            issues.append(
                MappingIssue(
                    "warning",
                    "product-manufacturer-mismatch",
                    f"profile.products.{snapshot.product.code}.manufacturer",
                    f"profile names {mapping.manufacturer!r}, order comes from {snapshot.manufacturer.id!r}",
                )
            )
        codings.append({"system": mapping.system, "code": mapping.local_code, "display": mapping.display})
    codings.append(product_coding(journey))
    resource = build_service_request(
        journey.service_request_id,
        status=status_row(journey.event.status_after).service_request_status,
        identifiers=_order_identifiers(journey),
        code={"coding": codings, "text": codings[0]["display"]},
        subject=journey.patient_ref,
        requester=journey.practitioner_ref,
        performer=journey.manufacturer_ref,
        priority=snapshot.order.priority,
        authored_on=_authored_on(journey),
        occurrence=Period(),
        note=snapshot.order.note,
        profile_version=profile.version,
    )
    return resource, issues


def _business_status(journey: Journey, terminology: Terminology) -> tuple[dict[str, Any], list[MappingIssue]]:
    status = journey.event.status_after
    concept, issue = terminology.business_status_or_fallback(status.value, "task.businessStatus")
    ours = {"system": concept.system, "code": concept.code, "display": concept.display}
    override = journey.profile.business_status.overrides.get(status.value)
    codings = (
        [{k: v for k, v in override.model_dump().items() if v is not None}, ours] if override else [ours]
    )
    return {"coding": codings, "text": codings[0].get("display") or concept.display}, [issue] if issue else []


def _status_reason(journey: Journey) -> str | None:
    row = status_row(journey.event.status_after)
    if row.reason_event is None:
        return None
    record = journey.latest(row.reason_event, include_late=False)
    reason = record.data.get("reason") if record else None
    return str(reason) if reason else None


def _execution(journey: Journey) -> Period:
    collected = [c.collected_at for c in journey.collections if not c.event.late]
    start = collected[0] if collected else None
    terminal = next((r for r in journey.history if r.status_after in TERMINAL_STATUSES and not r.late), None)
    if start is None and terminal is not None and terminal.type is not EventType.order_cancelled:
        start = terminal.occurred_at
    return Period(
        start=fhir_instant(start) if start else None,
        end=fhir_instant(terminal.occurred_at) if terminal else None,
    )


def _restriction(journey: Journey) -> Period:
    requested = journey.snapshot.order.requested
    return Period(
        start=fhir_date(requested.apheresis_date) if requested.apheresis_date else None,
        end=fhir_date(requested.infusion_date) if requested.infusion_date else None,
    )


def _task_inputs(journey: Journey) -> tuple[list[TaskInput], list[TaskInput]]:
    """Schedule, shipment and lot facts as Task inputs; the final product as the Task output."""
    inputs = []
    confirmed = (
        typed_data(r) if (r := journey.latest(EventType.order_confirmed, include_late=False)) else None
    )
    if isinstance(confirmed, OrderConfirmedData) and confirmed.slot_id:
        inputs.append(TaskInput("manufacturing-slot", "Manufacturing slot", string=confirmed.slot_id))
    scheduled = journey.latest(
        EventType.apheresis_scheduled, EventType.apheresis_rescheduled, include_late=False
    )
    apheresis = typed_data(scheduled) if scheduled else None
    if isinstance(apheresis, ApheresisScheduledData | ApheresisRescheduledData):
        inputs.append(
            TaskInput("apheresis-start", "Apheresis scheduled start", date_time=fhir_instant(apheresis.start))
        )
        if apheresis.end:
            inputs.append(
                TaskInput("apheresis-end", "Apheresis scheduled end", date_time=fhir_instant(apheresis.end))
            )
    first_schedule = journey.first(EventType.apheresis_scheduled, include_late=False)
    location = typed_data(first_schedule) if first_schedule else None
    if isinstance(location, ApheresisScheduledData) and location.location:
        inputs.append(TaskInput("apheresis-location", "Apheresis location", string=location.location))
    lot = journey.task_lot
    outputs = []
    if lot is not None:
        inputs.append(TaskInput("product-lot", "Product lot", string=lot.lot))
        completed = typed_data(lot.completed) if lot.completed else None
        if isinstance(completed, ManufacturingCompletedData):
            inputs.append(
                TaskInput("product-expiry", "Product expiry", date_time=fhir_instant(completed.expires_at))
            )
            outputs.append(
                TaskInput(
                    "final-product",
                    "Final product",
                    reference=reference("BiologicallyDerivedProduct", lot.product_id),
                )
            )
    dispatched = (
        typed_data(r) if (r := journey.latest(EventType.shipment_dispatched, include_late=False)) else None
    )
    if isinstance(dispatched, ShipmentDispatchedData):
        if dispatched.carrier:
            inputs.append(TaskInput("shipment-carrier", "Shipment carrier", string=dispatched.carrier))
        if dispatched.tracking_number:
            inputs.append(
                TaskInput("shipment-tracking", "Shipment tracking number", string=dispatched.tracking_number)
            )
        if dispatched.expected_at:
            inputs.append(
                TaskInput(
                    "shipment-expected",
                    "Shipment expected arrival",
                    date_time=fhir_instant(dispatched.expected_at),
                )
            )
    infusion = (
        typed_data(r) if (r := journey.latest(EventType.infusion_scheduled, include_late=False)) else None
    )
    if isinstance(infusion, InfusionScheduledData):
        inputs.append(
            TaskInput("infusion-start", "Infusion scheduled start", date_time=fhir_instant(infusion.start))
        )
    return inputs, outputs


def _task(journey: Journey, terminology: Terminology) -> tuple[dict[str, Any], list[MappingIssue]]:
    snapshot = journey.snapshot
    business_status, issues = _business_status(journey, terminology)
    inputs, outputs = _task_inputs(journey)
    # Late events and custody handoffs add Observations/Provenance but do not modify the Task.
    current = [r for r in journey.history if not r.late and r.type not in _NOT_TASK_CHANGES] or list(
        journey.history[:1]
    )
    resource = build_task(
        journey.task_id,
        status=status_row(journey.event.status_after).task_status,
        business_status=business_status,
        status_reason=_status_reason(journey),
        identifiers=[identifier(journey.profile.orders.filler_system, snapshot.order.order_id, "FILL")],
        group_identifier=journey.coi_identifier,
        service_request=journey.service_request_ref,
        patient=journey.patient_ref,
        owner=journey.manufacturer_ref,
        requester=journey.practitioner_ref,
        recipient=journey.site_ref,
        priority=snapshot.order.priority,
        authored_on=_authored_on(journey),
        last_modified=fhir_instant(max(r.occurred_at for r in current)),
        restriction=_restriction(journey),
        execution=_execution(journey),
        inputs=inputs,
        outputs=outputs,
        profile_version=journey.profile.version,
    )
    return resource, issues
