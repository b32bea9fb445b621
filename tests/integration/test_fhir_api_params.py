"""Pure pieces of the FHIR API: date ranges, index extraction, query parsing, cursors.
(No database; kept beside the API tests it supports.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.fhir_api.bundle import decode_cursor, encode_cursor
from gateway.fhir_api.outcome import FhirError
from gateway.fhir_api.params import MAX_COUNT, is_lenient, parse_history, parse_search
from gateway.store.search_params import date_range, format_instant, from_us, index_values, to_us

instants = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                        timezones=st.just(UTC))


@given(instants)
def test_formatted_instant_is_a_one_microsecond_range_that_round_trips(value):
    us = to_us(value)
    assert from_us(us) == value
    assert date_range(format_instant(us)) == (us, us + 1)


@pytest.mark.parametrize("text,start,length", [
    ("2024", datetime(2024, 1, 1, tzinfo=UTC), timedelta(days=366)),
    ("2024-02", datetime(2024, 2, 1, tzinfo=UTC), timedelta(days=29)),
    ("2024-12", datetime(2024, 12, 1, tzinfo=UTC), timedelta(days=31)),
    ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC), timedelta(days=1)),
    ("2024-02-29T23:59", datetime(2024, 2, 29, 23, 59, tzinfo=UTC), timedelta(minutes=1)),
    ("2024-02-29T10:00:00+02:00", datetime(2024, 2, 29, 8, tzinfo=UTC), timedelta(seconds=1)),
    ("2024-02-29T10:00:00.25-05:30", datetime(2024, 2, 29, 15, 30, 0, 250000, tzinfo=UTC),
     timedelta(milliseconds=10)),
    ("2024-02-29T10:00:00.123456789Z", datetime(2024, 2, 29, 10, 0, 0, 123456, tzinfo=UTC),
     timedelta(microseconds=1)),
])
def test_date_range_keeps_precision(text, start, length):
    assert date_range(text) == (to_us(start), to_us(start + length))


@pytest.mark.parametrize("text", ["", "24", "2024-2", "2024-13", "2024-02-30", "2024-02-01T25:00",
                                  "2024-02-01T10", "yesterday", "2024-02-01T10:00:00+2"])
def test_date_range_refuses_what_is_not_a_fhir_date(text):
    with pytest.raises(ValueError):
        date_range(text)


def test_index_values_of_a_task():
    task = {"resourceType": "Task", "id": "t", "status": "ready",
            "businessStatus": {"coding": [{"system": "s", "code": "b"}, {"code": "nosystem"}]},
            "for": {"reference": "Patient/p"}, "owner": {"reference": "https://elsewhere/Organization/o"},
            "basedOn": [{"reference": "ServiceRequest/a"}, {"reference": "ServiceRequest/b"},
                        {"display": "x"}],
            "identifier": [{"system": "i", "value": "1"}, {"system": "i"}],
            "lastModified": "2026-01-02", "focus": {"reference": "#contained"}}
    tokens, dates = index_values(task)
    assert tokens == sorted([
        ("status", "http://hl7.org/fhir/task-status", "ready"), ("business-status", "s", "b"),
        ("business-status", "", "nosystem"), ("patient", "Patient", "p"), ("subject", "Patient", "p"),
        ("based-on", "ServiceRequest", "a"), ("based-on", "ServiceRequest", "b"), ("identifier", "i", "1"),
    ])
    assert dates == [("modified", *date_range("2026-01-02"))]


def test_index_values_of_an_observation_period_and_unindexed_types():
    obs = {"resourceType": "Observation", "id": "o", "effectivePeriod": {"start": "2026-01-01"}}
    assert index_values(obs)[1] == [("date", date_range("2026-01-01")[0], 2**62)]
    assert index_values({"resourceType": "Patient", "id": "p", "birthDate": "2000"}) == ([], [])
    assert index_values({"resourceType": "Observation", "id": "o", "effectiveDateTime": "soon"}) == ([], [])


def test_parse_search_combines_and_or_and_result_parameters():
    q = parse_search("Task", [("status", "ready,completed"), ("status", "ready"), ("_count", "5000"),
                              ("_sort", "-_lastUpdated"), ("_include", "Task:focus"), ("_format", "json"),
                              ("_total", "accurate")], lenient=False)
    assert [f.values for f in q.filters] == [((None, "ready"), (None, "completed")), ((None, "ready"),)]
    assert q.count == MAX_COUNT and q.descending and q.includes == ("Task:focus",) and q.total
    assert ("_format", "json") not in q.params and ("_count", "5000") in q.params


def test_parse_search_lenient_drops_unknown_but_not_bad_values():
    q = parse_search("Task", [("colour", "red"), ("status", "ready")], lenient=True)
    assert q.params == (("status", "ready"),)
    with pytest.raises(FhirError) as bad:
        parse_search("Task", [("colour", "red"), ("modified", "soon")], lenient=True)
    assert bad.value.status == 400 and bad.value.code == "invalid"


def test_parse_history():
    h = parse_history([("_since", "2026-01-01T00:00:00Z"), ("_count", "0")], lenient=False)
    assert h.since_us == date_range("2026-01-01T00:00:00Z")[0] and h.count == 1
    with pytest.raises(FhirError):
        parse_history([("_at", "2026")], lenient=False)
    assert parse_history([("_at", "2026")], lenient=True).params == ()


@pytest.mark.parametrize("prefer,lenient", [
    (None, False), ("handling=lenient", True), ("return=minimal, handling=lenient", True),
    ("handling = lenient", True), ("handling=strict", False), ("respond-async", False),
])
def test_prefer_header(prefer, lenient):
    assert is_lenient(prefer) is lenient


def test_cursor_round_trip_and_refusals():
    token = encode_cursor([("status", "ready")], (123, "abc"))
    assert decode_cursor(token, (int, str)) == ([("status", "ready")], (123, "abc"))
    for bad, kinds in [(token, (int, str, int)), (token, (str, str)), ("%%%", (int, str)),
                       (encode_cursor([], (True, "x")), (int, str))]:
        with pytest.raises(FhirError) as err:
            decode_cursor(bad, kinds)
        assert err.value.status == 400
