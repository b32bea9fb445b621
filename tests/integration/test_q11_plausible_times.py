"""Issue 11, item 3: a wrong timestamp must not brick an order; numbers are not times.

Each reproduced request from the issue is posted exactly, and the refusal must leave the order
as it was, so that the genuine events that follow still apply.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.bootstrap import create_app
from gateway.config import load_settings
from tests.conftest import ACME, ADMIN, DEMO_CONFIG, SITE_A, TestClient, event_body, order_body

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
EXAMPLE = "2026-11-25T09:00:00Z"


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture
def placed(client, clock):
    clock.set(NOW)
    assert client.post("/v1/orders", json=order_body("T-1"), headers=ACME).status_code == 201
    return client


def post(client, body, order_id="T-1"):
    return client.post(f"/v1/orders/{order_id}/events", json=body, headers=ACME)


def refused_fields(response, status=422, code="validation-failed") -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == code, body
    return {error["pointer"]: error["reason"] for error in body["errors"]}


def order_state(client, order_id="T-1"):
    order = client.get(f"/v1/orders/{order_id}", headers=ACME).json()
    return order["status"], order["state"]["stage_occurred_at"], len(order["timeline"])


# --------------------------------------------------------------------------- the requests from the issue


def test_an_occurred_at_in_2062_is_refused_and_the_genuine_events_still_apply(placed):
    before = order_state(placed)
    bad = event_body("E-2062", "order.confirmed", "2062-11-26T09:00:00Z")
    reasons = refused_fields(post(placed, bad))
    assert list(reasons) == ["/occurred_at"]
    assert "ahead of the gateway's clock" in reasons["/occurred_at"] and EXAMPLE in reasons["/occurred_at"]
    assert order_state(placed) == before  # nothing stored: no stage time in 2062
    genuine = post(placed, event_body("E-1", "order.confirmed", iso(NOW - timedelta(minutes=5))))
    assert genuine.status_code == 201 and genuine.json()["late"] is False
    assert genuine.json()["status_after"] == "confirmed"


def test_a_json_number_is_not_a_time(placed):
    before = order_state(placed)
    bad = event_body("E-NUM", "order.confirmed", 1795000000)  # type: ignore[arg-type]
    reasons = refused_fields(post(placed, bad))
    assert list(reasons) == ["/occurred_at"]
    assert "not a number" in reasons["/occurred_at"] and EXAMPLE in reasons["/occurred_at"]
    assert order_state(placed) == before


def test_a_time_in_1900_is_refused(placed):
    before = order_state(placed)
    reasons = refused_fields(post(placed, event_body("E-1900", "order.confirmed", "1900-01-01T00:00:00Z")))
    assert list(reasons) == ["/occurred_at"] and "before the year 2000" in reasons["/occurred_at"]
    assert order_state(placed) == before


# --------------------------------------------------------------------------- data times


@pytest.mark.parametrize(
    ("type_", "data", "pointer"),
    [
        ("collection.completed", {"collected_at": "2062-11-26T09:00:00Z"}, "/data/collected_at"),
        ("collection.completed", {"collected_at": 1795000000}, "/data/collected_at"),
        ("collection.completed", {"collected_at": "1900-01-01T00:00:00Z"}, "/data/collected_at"),
        ("apheresis.scheduled", {"start": "2031-01-01T09:00:00Z"}, "/data/start"),
        (
            "apheresis.scheduled",
            {"start": "2026-12-01T09:00:00Z", "end": "2062-11-26T09:00:00Z"},
            "/data/end",
        ),
        ("apheresis.scheduled", {"start": "1999-12-31T09:00:00Z"}, "/data/start"),
        ("shipment.dispatched", {"expected_at": "2062-11-26T09:00:00Z"}, "/data/expected_at"),
    ],
)
def test_data_times_are_checked_too(placed, type_, data, pointer):
    before = order_state(placed)
    reasons = refused_fields(post(placed, event_body("E-D", type_, iso(NOW), data)))
    assert list(reasons) == [pointer]
    assert EXAMPLE in reasons[pointer]
    assert order_state(placed) == before


def test_a_planned_time_may_lie_ahead(placed):
    body = event_body("E-S", "apheresis.scheduled", iso(NOW), {"start": iso(NOW + timedelta(days=700))})
    assert post(placed, body).status_code == 201


def test_the_skew_allows_a_few_minutes_of_clock_drift(placed):
    assert (
        post(placed, event_body("E-A", "order.confirmed", iso(NOW + timedelta(seconds=300)))).status_code
        == 201
    )
    reasons = refused_fields(
        post(
            placed,
            event_body(
                "E-B",
                "apheresis.scheduled",
                iso(NOW + timedelta(seconds=301)),
                {"start": iso(NOW + timedelta(days=3))},
            ),
        )
    )
    assert list(reasons) == ["/occurred_at"]


def test_an_identical_replay_of_an_accepted_event_stays_200(placed, clock):
    body = event_body("E-R", "order.confirmed", iso(NOW + timedelta(seconds=200)))
    assert post(placed, body).status_code == 201
    clock.set(NOW - timedelta(hours=1))  # even if the clock was set back meanwhile
    assert post(placed, body).status_code == 200


def test_a_wrong_coi_with_an_implausible_time_still_reaches_the_safety_log(placed):
    body = {**event_body("E-C", "order.confirmed", "2062-11-26T09:00:00Z"), "coi": "CHA999923A1B2C4"}
    assert refused_fields(post(placed, body), code="coi-mismatch")
    log = placed.get("/v1/admin/safety-log", headers=ADMIN).json()["items"]
    assert [entry["event_id"] for entry in log] == ["E-C"]


# --------------------------------------------------------------------------- the order body


@pytest.mark.parametrize(
    ("requested", "pointer"),
    [
        ({"apheresis_date": "2062-11-26"}, "/requested/apheresis_date"),
        ({"apheresis_date": "1900-01-01"}, "/requested/apheresis_date"),
        ({"apheresis_date": "2026-12-01", "infusion_date": "2031-01-01"}, "/requested/infusion_date"),
        ({"apheresis_date": 20261201}, "/requested/apheresis_date"),
    ],
)
def test_requested_dates_are_plausible_dates(client, clock, requested, pointer):
    clock.set(NOW)
    reasons = refused_fields(
        client.post("/v1/orders", json=order_body("T-2", requested=requested), headers=ACME)
    )
    assert list(reasons) == [pointer] and "1980-04-12" in reasons[pointer]
    assert client.get("/v1/orders/T-2", headers=ACME).status_code == 404


@pytest.mark.parametrize(
    ("patch", "pointer"),
    [
        ({"birth_date": 19800412}, "/patient/birth_date"),
        ({"birth_date": "12/04/1980"}, "/patient/birth_date"),
        ({"mrn": 42}, "/patient/mrn"),
        ({"given": "Quillon"}, "/patient/given"),
    ],
)
def test_patient_fields_take_json_of_their_own_type_only(client, clock, patch, pointer):
    clock.set(NOW)
    body = order_body("T-3")
    body["patient"] = {**body["patient"], **patch}
    reasons = refused_fields(client.post("/v1/orders", json=body, headers=ACME))
    assert list(reasons) == [pointer]
    if "birth_date" in pointer:
        assert "1980-04-12" in reasons[pointer]


def test_the_iso_forms_valid_before_stay_valid(placed):
    assert post(placed, event_body("E-1", "order.confirmed", "2026-11-25T04:00:00-05:00")).status_code == 201
    body = event_body(
        "E-2",
        "apheresis.scheduled",
        "2026-11-25T09:00:00.5+00:00",
        {"start": "2026-12-01T08:00:00-05:00", "end": "2026-12-01T12:00:00-05:00"},
    )
    assert post(placed, body).status_code == 201


@pytest.mark.parametrize(
    ("value", "reason_fragment"),
    [
        ("-150.5", "valid number"),
        (True, "valid number"),
        ([1], "valid number"),
    ],
)
def test_a_number_field_takes_a_json_number_only(placed, value, reason_fragment):
    collected = event_body("E-C", "collection.completed", iso(NOW), {"collected_at": iso(NOW)})
    assert post(placed, collected).status_code == 201
    custody = {"from_party": "site-a", "to_party": "courier", "at": iso(NOW), "temperature_c": value}
    reasons = refused_fields(post(placed, event_body("E-T", "custody.transferred", iso(NOW), custody)))
    assert list(reasons) == ["/data/temperature_c"] and reason_fragment in reasons["/data/temperature_c"]
    custody["temperature_c"] = -150.5
    assert post(placed, event_body("E-T", "custody.transferred", iso(NOW), custody)).status_code == 201


def test_updated_since_takes_an_iso_time_not_a_number(client):
    reasons = refused_fields(client.get("/v1/orders", params={"updated_since": "1795000000"}, headers=ACME),
                             status=400, code="invalid-parameter")  # a query parameter: 400 naming it
    assert list(reasons) == ["/query/updated_since"] and EXAMPLE in reasons["/query/updated_since"]
    assert client.get("/v1/orders", params={"updated_since": EXAMPLE}, headers=ACME).status_code == 200


# --------------------------------------------------------------------------- settings


def test_the_limits_are_settings(engine, clock):
    settings = load_settings(
        DEMO_CONFIG,
        database_url=engine.url.render_as_string(hide_password=False),
        max_future_skew_s=3600,
        max_plan_ahead_days=30,
        min_event_year=2020,
    )
    clock.set(NOW)
    with TestClient(create_app(settings, engine=engine, now=clock), raise_server_exceptions=False) as client:
        assert client.post("/v1/orders", json=order_body("T-S"), headers=ACME).status_code == 201
        ahead = event_body("E-1", "order.confirmed", iso(NOW + timedelta(minutes=50)))
        assert post(client, ahead, "T-S").status_code == 201
        far = event_body("E-2", "apheresis.scheduled", iso(NOW), {"start": iso(NOW + timedelta(days=31))})
        assert list(refused_fields(post(client, far, "T-S"))) == ["/data/start"]
        old = event_body("E-3", "apheresis.scheduled", "2019-06-01T00:00:00Z", {"start": iso(NOW)})
        assert list(refused_fields(post(client, old, "T-S"))) == ["/occurred_at"]


# --------------------------------------------------------------------------- preview


def test_preview_judges_times_against_the_replay_clock(client, clock):
    clock.set(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))  # the preview places the order now
    order = order_body("PV-1", requested={"apheresis_date": "2026-03-10"})
    events = [
        event_body("P1", "order.confirmed", "2026-03-03T09:00:00Z"),
        # collected_at more than the skew after the event was posted: it had not happened yet
        event_body(
            "P2", "collection.completed", "2026-03-12T17:30:00Z", {"collected_at": "2026-03-20T00:00:00Z"}
        ),
        event_body(
            "P3", "collection.completed", "2026-03-12T17:31:00Z", {"collected_at": "1900-01-01T00:00:00Z"}
        ),
        event_body(
            "P4", "collection.completed", "2026-03-12T17:32:00Z", {"collected_at": "2026-03-12T12:10:00Z"}
        ),
    ]
    response = client.post(
        "/v1/sites/site-a/preview", json={"order": order, "events": events}, headers=SITE_A
    )
    assert response.status_code == 200, response.text
    steps = {step["event_id"]: step for step in response.json()["steps"]}
    assert steps["P1"]["accepted"] and steps["P4"]["accepted"], steps
    for event_id in ("P2", "P3"):
        refusal = steps[event_id]["refusal"]
        assert refusal["code"] == "validation-failed"
        assert [e["pointer"] for e in refusal["errors"]] == ["/data/collected_at"]


def test_the_other_date_and_time_refusals_show_the_expected_form_too(client, clock):
    clock.set(NOW)
    body = order_body("T-4")
    body["patient"] = {**body["patient"], "birth_date": "2027-01-01"}
    reasons = refused_fields(client.post("/v1/orders", json=body, headers=ACME))
    assert "1980-04-12" in reasons["/patient/birth_date"]
    far = "9999-12-31T23:59:00-23:59"  # leaves the years 1-9999 once converted to UTC
    reasons = refused_fields(client.get("/v1/orders", params={"updated_since": far}, headers=ACME),
                             status=400, code="invalid-parameter")
    assert EXAMPLE in reasons["/query/updated_since"]


def test_an_appointment_may_not_end_before_it_starts(placed):
    """Found by outside probing: end 2026-11-01 before start 2026-12-01 was accepted (201)."""
    backwards = {"start": "2026-12-01T08:00:00Z", "end": "2026-11-01T08:00:00Z"}
    for event_id, type_ in (("E-B1", "apheresis.scheduled"), ("E-B2", "apheresis.rescheduled")):
        reasons = refused_fields(post(placed, event_body(event_id, type_, iso(NOW), backwards)))
        assert list(reasons) == ["/data/end"] and "before start" in reasons["/data/end"]
    same = {"start": "2026-12-01T08:00:00Z", "end": "2026-12-01T08:00:00Z"}
    assert post(placed, event_body("E-B3", "apheresis.scheduled", iso(NOW), same)).status_code == 201
