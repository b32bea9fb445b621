"""Plausible times and strict JSON types (issue 11, item 3), on the pure layer.

``mappings.plausible_times`` takes ``now`` as an argument; the gateway calls it with its clock (see
``tests/integration/test_q11_plausible_times.py`` for the API).  ``mappings.strict_types`` keeps ISO
strings valid and refuses numbers as times, strings as numbers and so on, in every API body model.
"""

from __future__ import annotations

import typing
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from mappings.domain import EventType
from mappings.events import EVENT_DATA_MODELS, EventIn, Measurement
from mappings.orders import OrderIn, Patient, Provider, Requested
from mappings.plausible_times import (
    HAPPENED_FIELDS,
    PLANNED_FIELDS,
    ImplausibleTime,
    TimeLimits,
    implausible_order_times,
    implausible_times,
)
from mappings.strict_types import DATE_EXAMPLE, DATETIME_EXAMPLE

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
LIMITS = TimeLimits()


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def event(type_: str, occurred_at: Any, **data: Any) -> EventIn:
    return EventIn.model_validate(
        {
            "event_id": "E1",
            "type": type_,
            "coi": "C",
            "data": data,
            "occurred_at": iso(occurred_at) if isinstance(occurred_at, datetime) else occurred_at,
        }
    )


def pointers(problems: list[ImplausibleTime]) -> list[str]:
    return [problem.pointer for problem in problems]


# --------------------------------------------------------------------------- the reproduced defect


def test_the_2062_occurred_at_is_refused_naming_the_field() -> None:
    problems = implausible_times(event("order.confirmed", "2062-11-26T09:00:00Z"), NOW, LIMITS)
    assert pointers(problems) == ["/occurred_at"]
    assert "ahead of the gateway's clock (2026-11-25T09:00:00Z)" in problems[0].reason
    assert DATETIME_EXAMPLE in problems[0].reason


def test_a_1900_occurred_at_is_refused() -> None:
    problems = implausible_times(event("order.confirmed", "1900-01-01T00:00:00Z"), NOW, LIMITS)
    assert pointers(problems) == ["/occurred_at"]
    assert "before the year 2000" in problems[0].reason and DATETIME_EXAMPLE in problems[0].reason


def test_a_json_number_is_not_a_time() -> None:
    with pytest.raises(ValidationError) as excinfo:
        EventIn.model_validate(
            {"event_id": "E1", "type": "order.confirmed", "coi": "C", "occurred_at": 1795000000}
        )
    [error] = excinfo.value.errors()
    assert error["loc"] == ("occurred_at",)
    assert DATETIME_EXAMPLE in error["msg"] and "not a number" in error["msg"]


# --------------------------------------------------------------------------- the bounds


@pytest.mark.parametrize(
    ("ahead", "refused"),
    [
        (timedelta(0), False),
        (timedelta(seconds=300), False),
        (timedelta(seconds=301), True),
        (-timedelta(days=3000), False),
    ],
)
@pytest.mark.parametrize("field", ["occurred_at", "collected_at"])
def test_a_time_that_happened_may_be_at_most_the_skew_ahead(
    ahead: timedelta, refused: bool, field: str
) -> None:
    moment = NOW + ahead
    if field == "occurred_at":
        posted = event("order.confirmed", moment)
    else:
        posted = event("collection.completed", NOW, collected_at=iso(moment))
    expected = [f"/{field}" if field == "occurred_at" else f"/data/{field}"] if refused else []
    assert pointers(implausible_times(posted, NOW, LIMITS)) == expected


@pytest.mark.parametrize(
    ("type_", "data", "pointer"),
    [
        (
            "custody.transferred",
            {"from_party": "a", "to_party": "b", "at": "2027-01-01T00:00:00Z"},
            "/data/at",
        ),
        ("shipment.received", {"received_at": "2027-01-01T00:00:00Z"}, "/data/received_at"),
        ("product.infused", {"infused_at": "2027-01-01T00:00:00Z"}, "/data/infused_at"),
        ("collection.completed", {"collected_at": "2027-01-01T00:00:00Z"}, "/data/collected_at"),
    ],
)
def test_every_happened_data_time_is_bounded_by_the_skew(
    type_: str, data: dict[str, Any], pointer: str
) -> None:
    assert pointers(implausible_times(event(type_, NOW, **data), NOW, LIMITS)) == [pointer]


@pytest.mark.parametrize(
    ("type_", "data", "pointer"),
    [
        ("apheresis.scheduled", {"start": "{}"}, "/data/start"),
        # an end may not be before its start (a model rule): both move together here
        ("apheresis.scheduled", {"start": "{}", "end": "{}"}, "/data/end"),
        ("apheresis.rescheduled", {"start": "{}"}, "/data/start"),
        ("infusion.scheduled", {"start": "{}"}, "/data/start"),
        ("shipment.dispatched", {"expected_at": "{}"}, "/data/expected_at"),
        ("manufacturing.completed", {"lot": "L1", "expires_at": "{}"}, "/data/expires_at"),
    ],
)
def test_a_planned_time_may_lie_ahead_but_not_beyond_the_plan_limit(
    type_: str, data: dict[str, Any], pointer: str
) -> None:
    def with_time(moment: datetime) -> EventIn:
        return event(type_, NOW, **{k: iso(moment) if v == "{}" else v for k, v in data.items()})

    expected = [f"/data/{key}" for key, value in data.items() if value == "{}"]
    assert expected[-1] == pointer
    assert implausible_times(with_time(NOW + timedelta(days=730)), NOW, LIMITS) == []
    problems = implausible_times(with_time(NOW + timedelta(days=731)), NOW, LIMITS)
    assert pointers(problems) == expected
    assert all("at most 730 days ahead" in p.reason and DATETIME_EXAMPLE in p.reason for p in problems)
    too_early = implausible_times(with_time(datetime(1999, 12, 31, 23, 0, tzinfo=UTC)), NOW, LIMITS)
    assert pointers(too_early) == expected


def test_the_minimum_year_is_judged_in_utc() -> None:
    # 2000-01-01T00:30+01:00 is 1999-12-31T23:30Z
    assert pointers(
        implausible_times(event("order.confirmed", "2000-01-01T00:30:00+01:00"), NOW, LIMITS)
    ) == ["/occurred_at"]
    assert implausible_times(event("order.confirmed", "2000-01-01T00:30:00Z"), NOW, LIMITS) == []


def test_limits_are_arguments() -> None:
    posted = event("order.confirmed", NOW + timedelta(hours=1))
    assert implausible_times(posted, NOW, LIMITS) != []
    assert implausible_times(posted, NOW, TimeLimits(max_future_skew=timedelta(hours=2))) == []
    old = event("order.confirmed", "2001-06-01T00:00:00Z")
    assert implausible_times(old, NOW, TimeLimits(min_year=2010)) != []


def test_all_problems_are_reported_at_once() -> None:
    posted = event("collection.completed", "2062-11-26T09:00:00Z", collected_at="1900-01-01T00:00:00Z")
    assert pointers(implausible_times(posted, NOW, LIMITS)) == ["/occurred_at", "/data/collected_at"]


def test_the_function_reads_no_clock() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        implausible_times(event("order.confirmed", NOW), datetime(2026, 1, 1), LIMITS)
    far = event("order.confirmed", "2062-11-26T09:00:00Z")
    assert implausible_times(far, datetime(2062, 11, 26, 9, 0, tzinfo=UTC), LIMITS) == []


def test_every_time_field_of_every_event_is_classified_exactly_once() -> None:
    assert not HAPPENED_FIELDS & PLANNED_FIELDS
    for model in EVENT_DATA_MODELS.values():
        for name, field in model.model_fields.items():
            if "datetime" in str(field.annotation).lower() or "Instant" in repr(field.annotation):
                assert name in HAPPENED_FIELDS | PLANNED_FIELDS, f"{model.__name__}.{name}"
    assert "occurred_at" in HAPPENED_FIELDS


# --------------------------------------------------------------------------- the order's requested dates


def order(**requested: str) -> OrderIn:
    return OrderIn.model_validate(
        {
            "order_id": "O1",
            "coi": "C",
            "product_code": "P",
            "site_id": "s",
            "priority": "routine",
            "patient": {
                "mrn": "M",
                "family": "F",
                "given": ["G"],
                "birth_date": "1980-04-12",
                "sex": "female",
            },
            "ordering_provider": {"npi": "1234567893", "family": "F", "given": ["G"]},
            "requested": requested,
        }
    )


@pytest.mark.parametrize(
    ("requested", "expected"),
    [
        ({"apheresis_date": "2026-12-01", "infusion_date": "2027-01-15"}, []),
        ({"apheresis_date": "2026-01-01"}, []),  # in the past: a late order entry is not implausible
        ({"apheresis_date": "2028-11-25"}, []),  # 730 days (2028 is a leap year) and a day for time zones
        ({"apheresis_date": "2028-11-26"}, ["/requested/apheresis_date"]),
        ({"infusion_date": "2062-11-26"}, ["/requested/infusion_date"]),
        ({"apheresis_date": "1999-12-31"}, ["/requested/apheresis_date"]),
        (
            {"apheresis_date": "1900-01-01", "infusion_date": "2062-11-26"},
            ["/requested/apheresis_date", "/requested/infusion_date"],
        ),
    ],
)
def test_requested_dates_plan_the_future(requested: dict[str, str], expected: list[str]) -> None:
    problems = implausible_order_times(order(**requested), NOW, LIMITS)
    assert pointers(problems) == expected
    assert all(DATE_EXAMPLE in problem.reason for problem in problems)


def test_the_birth_date_keeps_its_own_rule() -> None:
    born = order().model_copy(
        update={"patient": order().patient.model_copy(update={"birth_date": date(1931, 5, 2)})}
    )
    assert implausible_order_times(born, NOW, LIMITS) == []


# --------------------------------------------------------------------------- strict JSON types, all bodies

EVENT_SAMPLES: dict[EventType, dict[str, Any]] = {
    EventType.order_confirmed: {"slot_id": "S1"},
    EventType.apheresis_scheduled: {"start": DATETIME_EXAMPLE, "end": DATETIME_EXAMPLE, "location": "L"},
    EventType.apheresis_rescheduled: {"start": DATETIME_EXAMPLE, "end": DATETIME_EXAMPLE, "reason": "R"},
    EventType.collection_completed: {
        "collected_at": DATETIME_EXAMPLE,
        "din": "A999921123456",
        "measurements": [{"code": "cd3_count", "value": 1.5, "unit": "u"}],
    },
    EventType.custody_transferred: {
        "from_party": "a",
        "to_party": "b",
        "at": DATETIME_EXAMPLE,
        "location": "L",
        "temperature_c": 4.1,
        "container_id": "C",
    },
    EventType.manufacturing_started: {"lot": "L1"},
    EventType.manufacturing_completed: {"lot": "L1", "expires_at": DATETIME_EXAMPLE},
    EventType.release_passed: {"results": []},
    EventType.release_failed: {"results": [], "reason": "R", "disposition": "remanufacture"},
    EventType.shipment_dispatched: {"carrier": "C", "tracking_number": "T", "expected_at": DATETIME_EXAMPLE},
    EventType.shipment_received: {"received_at": DATETIME_EXAMPLE, "temperature_c": -180},
    EventType.infusion_scheduled: {"start": DATETIME_EXAMPLE},
    EventType.product_infused: {"infused_at": DATETIME_EXAMPLE},
    EventType.order_on_hold: {"reason": "R"},
    EventType.order_cancelled: {"reason": "R"},
}
BODY_SAMPLES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (
        EventIn,
        {
            "event_id": "E1",
            "type": "order.confirmed",
            "occurred_at": DATETIME_EXAMPLE,
            "coi": "C",
            "data": {},
        },
    ),
    (OrderIn, order(apheresis_date="2026-12-01").model_dump(mode="json", exclude_none=True)),
    (Patient, {"mrn": "M", "family": "F", "given": ["G"], "birth_date": DATE_EXAMPLE, "sex": "female"}),
    (Provider, {"npi": "1234567893", "family": "F", "given": ["G"]}),
    (Requested, {"apheresis_date": "2026-12-01", "infusion_date": "2027-01-15"}),
    (Measurement, {"code": "cd3_count", "value": 1.5, "unit": "u", "specification": ">=1"}),
    *[(EVENT_DATA_MODELS[t], sample) for t, sample in EVENT_SAMPLES.items()],
]


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


_WRONG = {
    "string": [1795000000, 4.5, True, None, [], {}],
    "number": ["4.1", "4", True, False, None, [], {}],
    "list": ["x", 1, True, {}],
    "dict": ["x", 1, True, []],
}


@pytest.mark.parametrize(("model", "sample"), BODY_SAMPLES, ids=lambda v: getattr(v, "__name__", ""))
def test_every_field_refuses_json_of_another_type(model: type[BaseModel], sample: dict[str, Any]) -> None:
    model.model_validate(sample)  # the sample is valid as it is
    assert set(sample) == set(model.model_fields) or model is OrderIn, "the sample sets every field"
    for name, value in sample.items():
        if model is Measurement and name == "value":
            continue  # a number or a text result, by design (a boolean is neither: tested elsewhere)
        for wrong in _WRONG[_kind(value)]:
            if wrong is None and not _required(model, name):
                continue  # null means absent for an optional field
            with pytest.raises(ValidationError) as excinfo:
                model.model_validate({**sample, name: wrong})
            locs = {error["loc"][0] for error in excinfo.value.errors()}
            assert locs == {name}, (model.__name__, name, wrong, excinfo.value.errors())


def _required(model: type[BaseModel], name: str) -> bool:
    return model.model_fields[name].is_required() or type(None) not in typing.get_args(
        model.model_fields[name].annotation
    )


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-25T09:00:00Z",
        "2026-11-25T09:00:00+00:00",
        "2026-11-25T04:00:00-05:00",
        "2026-11-25T09:00:00.123456Z",
        "2026-11-25 09:00:00Z",
        "2026-11-25t09:00:00z",
    ],
)
def test_iso_strings_stay_valid_times(value: str) -> None:
    assert event("order.confirmed", value).occurred_at == datetime(2026, 11, 25, 9, 0, tzinfo=UTC).replace(
        microsecond=123456 if ".123456" in value else 0
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (1795000000, "not a number"),
        ("1795000000", DATETIME_EXAMPLE),
        (True, "not true or false"),
        ("2026-11-25T09:00:00", "must have a time zone"),
        ("2026-11-25", DATETIME_EXAMPLE),
        ("25/11/2026 09:00", DATETIME_EXAMPLE),
        ("2026-13-45T09:00:00Z", DATETIME_EXAMPLE),
        ({"at": 1}, "given as a string"),
    ],
)
def test_every_datetime_error_shows_the_expected_form(value: Any, fragment: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        event("order.confirmed", value)
    [error] = excinfo.value.errors()
    assert fragment in error["msg"] and DATETIME_EXAMPLE in error["msg"]


@pytest.mark.parametrize("value", [19800412, "19800412", "0", "12/04/1980", "1980-02-30", False, 0.5])
def test_every_date_error_shows_the_expected_form(value: Any) -> None:
    with pytest.raises(ValidationError) as excinfo:
        Patient.model_validate(
            {"mrn": "M", "family": "F", "given": ["G"], "birth_date": value, "sex": "male"}
        )
    [error] = excinfo.value.errors()
    assert error["loc"] == ("birth_date",) and DATE_EXAMPLE in error["msg"]


def test_python_callers_may_still_pass_datetime_objects() -> None:
    typed = EVENT_DATA_MODELS[EventType.product_infused].model_validate({"infused_at": NOW})
    assert typed.model_dump()["infused_at"] == NOW
    assert Requested(apheresis_date=date(2026, 12, 1)).apheresis_date == date(2026, 12, 1)
