"""Issue 11, item 5: no stage skips past the safety gates, through the API.

Reproduced from outside: ``placed -> shipment.dispatched -> product.infused`` was accepted with no
collection, manufacture or release.  Each refusal is a 409 problem naming ``/type``, and nothing is
stored: the order stays where it was.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from gateway.store.tables import EventRow
from tests.conftest import ACME, NOVA, NOVA_COI, event_body, nova_order_body, order_body

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def at(**delta: float) -> str:
    return (T0 + timedelta(**delta)).isoformat().replace("+00:00", "Z")


@pytest.fixture
def placed(client, clock):
    clock.set(T0)
    assert client.post("/v1/orders", json=order_body("G-1"), headers=ACME).status_code == 201
    clock.set(T0 + timedelta(days=30))  # events are posted once they happened
    return client


def post(client, event_id, type_, occurred_at, data=None, order_id="G-1"):
    return client.post(
        f"/v1/orders/{order_id}/events", json=event_body(event_id, type_, occurred_at, data), headers=ACME
    )


def refusal(response, code):
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    assert [error["pointer"] for error in body["errors"]] == ["/type"]
    return body


def stored_events(engine):
    with Session(engine) as session:
        return [e.event_id for e in session.exec(select(EventRow).order_by(EventRow.sequence)).all()]


COLLECTED = ("C", "collection.completed", at(days=5), {"collected_at": at(days=5), "din": "A999921123456"})
MADE = ("M", "manufacturing.completed", at(days=15), {"lot": "L1", "expires_at": at(days=200)})
RELEASED = ("R", "release.passed", at(days=16), {})


def test_the_issue_sequence_placed_dispatched_infused_is_refused(placed, engine):
    before = stored_events(engine)
    dispatched = refusal(
        post(placed, "S", "shipment.dispatched", at(days=1), {"carrier": "CryoPort"}), "not-released"
    )
    assert "release decision" in dispatched["errors"][0]["reason"]
    refusal(post(placed, "I", "product.infused", at(days=2), {"infused_at": at(days=2)}), "not-released")
    assert stored_events(engine) == before
    assert placed.get("/v1/orders/G-1", headers=ACME).json()["status"] == "placed"


def test_custody_and_manufacturing_before_collection_have_no_material(placed, engine):
    before = stored_events(engine)
    refusal(
        post(
            placed,
            "X",
            "custody.transferred",
            at(days=1),
            {"from_party": "a", "to_party": "b", "at": at(days=1)},
        ),
        "no-material",
    )
    refusal(post(placed, "MS", "manufacturing.started", at(days=1)), "no-material")
    refusal(
        post(placed, "MC", "manufacturing.completed", at(days=2), {"lot": "L", "expires_at": at(days=90)}),
        "no-material",
    )
    assert stored_events(engine) == before


def test_a_release_needs_a_completed_manufacturing_run(placed):
    assert post(placed, *COLLECTED).status_code == 201
    refusal(post(placed, "R0", "release.passed", at(days=6)), "invalid-transition")
    refusal(
        post(
            placed,
            "R1",
            "release.failed",
            at(days=6),
            {"reason": "ok by QP", "disposition": "exception_release"},
        ),
        "invalid-transition",
    )
    assert post(placed, "MS", "manufacturing.started", at(days=7)).status_code == 201
    refusal(post(placed, "R2", "release.passed", at(days=8)), "invalid-transition")
    refusal(post(placed, "S", "shipment.dispatched", at(days=8)), "not-released")


@pytest.mark.parametrize(
    "gated",
    [
        ("S", "shipment.dispatched", at(days=17), {}),
        ("SR", "shipment.received", at(days=17), {"received_at": at(days=17)}),
        ("IS", "infusion.scheduled", at(days=17), {"start": at(days=20)}),
        ("PI", "product.infused", at(days=17), {"infused_at": at(days=17)}),
    ],
)
def test_every_gated_event_waits_for_the_release_and_then_applies(placed, gated):
    assert post(placed, *COLLECTED).status_code == 201
    assert post(placed, *MADE).status_code == 201
    refusal(post(placed, *gated), "not-released")
    assert post(placed, *RELEASED).status_code == 201
    assert post(placed, *gated).status_code == 201


def test_a_remanufacture_needs_a_new_release(placed):
    for step in (COLLECTED, MADE, RELEASED):
        assert post(placed, *step).status_code == 201
    rework = post(
        placed, "F", "release.failed", at(days=17), {"reason": "low CAR+", "disposition": "remanufacture"}
    )
    assert rework.status_code == 201 and rework.json()["status_after"] == "manufacturing"
    refusal(post(placed, "S", "shipment.dispatched", at(days=18)), "not-released")
    assert (
        post(
            placed, "M2", "manufacturing.completed", at(days=25), {"lot": "L2", "expires_at": at(days=200)}
        ).status_code
        == 201
    )
    refusal(post(placed, "S", "shipment.dispatched", at(days=26)), "not-released")
    assert post(placed, "R2", "release.passed", at(days=27)).status_code == 201
    assert post(placed, "S", "shipment.dispatched", at(days=28)).json()["status_after"] == "shipped"


def test_a_held_order_reports_the_hold_first(placed):
    assert post(placed, *COLLECTED).status_code == 201
    assert post(placed, "H", "order.on_hold", at(days=6), {"reason": "patient unwell"}).status_code == 201
    refusal(post(placed, "S", "shipment.dispatched", at(days=7)), "order-on-hold")
    assert post(placed, "U", "order.resumed", at(days=8)).status_code == 201
    refusal(post(placed, "S", "shipment.dispatched", at(days=9)), "not-released")


def test_the_nova_product_is_gated_too(client, clock):
    clock.set(T0)
    assert client.post("/v1/orders", json=nova_order_body("G-N"), headers=NOVA).status_code == 201
    clock.set(T0 + timedelta(days=30))
    r = client.post(
        "/v1/orders/G-N/events",
        json=event_body("N1", "manufacturing.started", at(days=1), coi=NOVA_COI),
        headers=NOVA,
    )
    refusal(r, "no-material")
