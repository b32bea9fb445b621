"""The FHIR request Task of a site request, and the ServiceRequest carrying the site's order number."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from mappings.fhir import codes
from mappings.fhir.order import site_order_identifier, site_order_system
from mappings.fhir.site_request import (
    REQUEST_TASK_STATUS,
    SITE_REQUEST_SYSTEM,
    request_task_id,
    site_request_key_system,
)
from mappings.ids import order_system, resource_id
from mappings.profile.schema import OrderIdentifierSettings
from mappings.site_request import SITE_REQUEST_STATES, TASK_CODE, SiteRequestKind, SiteRequestView
from mappings.snapshot import OrderSnapshot
from mappings.translate import translate
from mappings.translate_site_request import translate_site_request
from terminology import load_terminology
from tests.unit.hl7v2_cases import NOW, journey, profile, variant

RECEIVED = datetime(2026, 3, 15, 10, 0, tzinfo=UTC)
DECIDED = datetime(2026, 3, 15, 16, 30, 15, 250000, tzinfo=UTC)


def _round_trips(resource: dict[str, Any]) -> None:
    model = get_fhir_model_class(resource["resourceType"])
    first = model.model_validate(resource).model_dump(mode="json", exclude_none=True)
    assert first == resource
    assert model.model_validate(first).model_dump(mode="json", exclude_none=True) == resource


def at(site_id: str, index: int) -> tuple[OrderSnapshot, Any]:
    return journey(site_id, "journey-autologous")[index]


def view(snapshot: OrderSnapshot, kind: SiteRequestKind, state: Any, **extra: Any) -> SiteRequestView:
    decided = state in ("applied", "accepted", "declined")
    values: dict[str, Any] = {
        "request_id": "SR-0042", "order_id": snapshot.order.order_id, "site_id": snapshot.site.id,
        "manufacturer_id": snapshot.manufacturer.id, "kind": kind, "state": state, "channel": "fhir",
        "received_at": RECEIVED, "reason": "Platelets low",
        "decision_reason": "Slot moved" if decided else None, "decided_at": DECIDED if decided else None,
        "requested": {"appointment": "apheresis", "start": "2026-03-12T08:00:00-05:00",
                      "end": "2026-03-12T12:00:00-05:00"},
    }
    values.update(extra)
    return SiteRequestView(**values)


def task_of(snapshot: OrderSnapshot, req: SiteRequestView, site_id: str = "site-a") -> dict[str, Any]:
    translation = translate_site_request(snapshot, req, profile(site_id), load_terminology(), NOW)
    (task,) = [r for r in translation.resources if r["resourceType"] == "Task"]
    assert translation.extra["request_task_id"] == task["id"]
    return task


@pytest.mark.parametrize("site_id", ["site-a", "site-b"])
@pytest.mark.parametrize("kind", list(TASK_CODE))
@pytest.mark.parametrize("state", SITE_REQUEST_STATES)
def test_every_request_task_validates_and_points_at_the_order(site_id: str, kind: SiteRequestKind,
                                                                state: Any) -> None:
    snapshot, record = at(site_id, 3)
    task = task_of(snapshot, view(snapshot, kind, state), site_id)
    _round_trips(task)
    order = translate(snapshot, record, profile(site_id), load_terminology(), NOW)
    (fulfilment,) = [r for r in order.resources if r["resourceType"] == "Task"]
    assert task["id"] == request_task_id(snapshot.manufacturer.id, snapshot.order.order_id, "SR-0042")
    assert task["id"] != fulfilment["id"]
    assert task["identifier"] == [{"system": SITE_REQUEST_SYSTEM, "value": "SR-0042"}]
    assert task["status"] == REQUEST_TASK_STATUS[state] and task["status"] in codes.TASK_STATUSES
    assert task["intent"] == "order" and task["intent"] in codes.TASK_INTENTS
    assert task["code"]["coding"][0]["system"] == codes.TASK_CODE_SYSTEM
    assert task["code"]["coding"][0]["code"] == TASK_CODE[kind]
    assert task["focus"] == {"reference": f"Task/{fulfilment['id']}"}
    assert task["for"] == fulfilment["for"]
    assert task["requester"] == fulfilment["restriction"]["recipient"][0]  # the site's Organization
    assert task["owner"] == fulfilment["owner"]  # the manufacturer's
    assert task["authoredOn"] == "2026-03-15T10:00:00Z"
    decided = state in ("applied", "accepted", "declined")
    assert task["lastModified"] == ("2026-03-15T16:30:15.250000Z" if decided else "2026-03-15T10:00:00Z")
    assert task.get("statusReason") == ({"text": "Slot moved"} if decided else None)
    inputs = {i["type"]["coding"][0]["code"]: i for i in task["input"]}
    assert inputs["requested-start"]["valueDateTime"] == "2026-03-12T13:00:00Z"
    assert inputs["requested-start"]["type"]["text"] == "Requested apheresis start"
    assert inputs["requested-end"]["valueDateTime"] == "2026-03-12T17:00:00Z"
    assert inputs["site-reason"]["valueString"] == "Platelets low"
    assert inputs["site-reason"]["type"]["text"] == "Reason given by the site"
    assert all(i["type"]["coding"][0]["system"] == codes.TASK_INPUT_SYSTEM for i in task["input"])


def test_state_to_status() -> None:
    assert REQUEST_TASK_STATUS == {"pending": "requested", "awaiting-manufacturer": "received",
                                   "applied": "completed", "accepted": "completed", "declined": "rejected"}


def test_ids_are_scoped_by_manufacturer_and_order() -> None:
    a = request_task_id("acme-bio", "ORD-1", "SR-1")
    assert a == resource_id("Task", f"{order_system('acme-bio')}/ORD-1/site-request", "SR-1")
    assert site_request_key_system("acme-bio", "ORD-1") == f"{order_system('acme-bio')}/ORD-1/site-request"
    others = [request_task_id("nova-cell", "ORD-1", "SR-1"), request_task_id("acme-bio", "ORD-2", "SR-1"),
              request_task_id("acme-bio", "ORD-1", "SR-2")]
    assert len({a, *others}) == 4


def test_the_services_task_id_is_kept() -> None:
    snapshot, _ = at("site-a", 3)
    given = "0b7e3f0c-1111-4a2b-9c3d-123456789abc"
    task = task_of(snapshot, view(snapshot, "cancel", "pending", task_id=given))
    assert task["id"] == given


def test_a_mrn_only_site_gets_no_name_in_the_task() -> None:
    snapshot, _ = at("site-b", 3)
    assert profile("site-b").patient.demographics == "mrn_only"
    patient = snapshot.order.patient
    for kind in TASK_CODE:
        for state in SITE_REQUEST_STATES:
            text = json.dumps(task_of(snapshot, view(snapshot, kind, state), "site-b"))
            for word in [patient.family, *patient.given, patient.birth_date.isoformat(), patient.mrn]:
                assert word not in text
            provider = snapshot.order.ordering_provider
            assert provider.family not in text  # nor the ordering provider's


def test_times_dates_and_bad_values_in_requested() -> None:
    snapshot, _ = at("site-a", 11)
    req = view(snapshot, "change", "pending", requested={"appointment": "infusion", "start": "2026-05-20",
                                                         "end": "not a time"})
    translation = translate_site_request(snapshot, req, profile("site-a"), load_terminology(), NOW)
    (task,) = translation.resources
    _round_trips(task)
    by_code = {i["type"]["coding"][0]["code"]: i for i in task["input"]}
    assert by_code["requested-start"]["valueDateTime"] == "2026-05-20"
    assert by_code["requested-start"]["type"]["text"] == "Requested infusion start"
    assert by_code["requested-appointment"]["valueString"] == "infusion"
    assert "requested-end" not in by_code
    found = [(i.code, i.path) for i in translation.issues]
    assert found == [("invalid-requested-time", "request.requested.end")]
    hold = view(snapshot, "hold", "pending", requested={}, reason=None)
    (task,) = translate_site_request(snapshot, hold, profile("site-a"), load_terminology(), NOW).resources
    assert "input" not in task
    _round_trips(task)


def test_kinds_without_a_task_code_have_no_task() -> None:
    snapshot, _ = at("site-a", 3)
    for state in SITE_REQUEST_STATES:
        translation = translate_site_request(snapshot, view(snapshot, "infused", state), profile("site-a"),
                                             load_terminology(), NOW)
        assert translation.resources == () and translation.extra["request_task_id"] is None


# ------------------------------------------------------------------ the site's own order number


@pytest.mark.parametrize("site_id", ["site-a", "site-b"])
def test_an_applied_order_number_gives_the_service_request_with_it_nothing_else(site_id: str) -> None:
    snapshot, record = at(site_id, 4)
    req = view(snapshot, "order_number", "applied", requested={"site_order_number": "ORD-88231"})
    translation = translate_site_request(snapshot, req, profile(site_id), load_terminology(), NOW)
    assert translation.messages == () and translation.issues == ()
    (service_request,) = translation.resources
    _round_trips(service_request)
    before = next(r for r in translate(snapshot, record, profile(site_id), load_terminology(), NOW).resources
                  if r["resourceType"] == "ServiceRequest")
    assert service_request["identifier"] == [*before["identifier"],
                                             site_order_identifier(profile(site_id), "ORD-88231")]
    assert service_request["identifier"][-1]["type"]["coding"][0]["code"] == "FILL"
    assert service_request["identifier"][-1]["system"] == (
        f"https://cgt-gateway.example.org/fhir/sid/site/{site_id}/order-number")
    assert {k: v for k, v in service_request.items() if k != "identifier"} == {
        k: v for k, v in before.items() if k != "identifier"}
    # the same as translating the order's newest event once the number is stored
    numbered = snapshot.model_copy(update={"site_order_number": "ORD-88231"})
    stored = req.__class__(**{**req.__dict__, "requested": {}})
    again = translate_site_request(numbered, stored, profile(site_id), load_terminology(), NOW)
    assert again.resources == translation.resources


def test_an_order_number_not_applied_changes_nothing() -> None:
    snapshot, _ = at("site-a", 4)
    for state in ("pending", "awaiting-manufacturer", "declined"):
        req = view(snapshot, "order_number", state, requested={"site_order_number": "ORD-1"})
        translation = translate_site_request(snapshot, req, profile("site-a"), load_terminology(), NOW)
        assert translation.resources == ()
    missing = view(snapshot, "order_number", "applied", requested={})
    translation = translate_site_request(snapshot, missing, profile("site-a"), load_terminology(), NOW)
    assert translation.resources == ()
    assert [i.code for i in translation.issues] == ["site-order-number-missing"]


def test_the_profile_may_name_the_site_order_system() -> None:
    base = profile("site-a")
    orders = OrderIdentifierSettings.model_validate(
        {**base.orders.model_dump(), "site_order_system": "https://site-a.example.org/fhir/sid/order"})
    site = base.model_copy(update={"orders": orders})
    assert site_order_system(site) == "https://site-a.example.org/fhir/sid/order"
    snapshot, record = at("site-a", 4)
    numbered = snapshot.model_copy(update={"site_order_number": "ORD-9"})
    service_request = next(r for r in translate(numbered, record, site, load_terminology(), NOW).resources
                           if r["resourceType"] == "ServiceRequest")
    assert service_request["identifier"][-1]["system"] == "https://site-a.example.org/fhir/sid/order"
    with pytest.raises(ValueError, match="site_order_system must differ"):
        OrderIdentifierSettings.model_validate(
            {**base.orders.model_dump(), "site_order_system": base.orders.placer_system})


def test_without_a_site_order_number_the_service_request_is_as_before() -> None:
    snapshot, record = at("site-a", 4)
    resources = translate(snapshot, record, variant("site-a"), load_terminology(), NOW).resources
    service_request = next(r for r in resources if r["resourceType"] == "ServiceRequest")
    assert [i["type"]["coding"][0]["code"] for i in service_request["identifier"]] == ["PLAC", "FILL"]
