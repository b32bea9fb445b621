"""Q4 (outside QA): malformed ids, version ids, NUL characters and out-of-range dates are the
client's mistake: a 4xx OperationOutcome naming what was wrong, on SQLite and PostgreSQL alike
(PostgreSQL refuses NUL in text and integers beyond its column types, which was a 500)."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.conftest import ACME, ADMIN, SITE_A, order_body
from tests.integration.test_fhir_api import ok, outcome


def _issue(response: Any) -> dict[str, Any]:
    return response.json()["issue"][0]  # type: ignore[no-any-return]


@pytest.fixture
def task_id(client) -> str:
    assert client.post("/v1/orders", json=order_body("Q4-1"), headers=ACME).status_code == 201
    [entry] = ok(client.get("/fhir/Task", headers=SITE_A))["entry"]
    return entry["resource"]["id"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("path", [
    "/fhir/Task/abc%00", "/fhir/Task/abc%00/_history", "/fhir/Task/abc%00/_history/1",
    "/fhir/Task/" + "a" * 65, "/fhir/Task/a%20b", "/fhir/Task/a_b",
])
def test_an_id_outside_the_fhir_id_grammar_is_not_found(client, path):
    diagnostics = outcome(client.get(path, headers=ADMIN), 404, "not-found")
    assert "id" in diagnostics


@pytest.mark.parametrize("version", ["99999999999999999999", "2147483648", "0", "-1", "1.0", "x"])
def test_a_version_id_outside_the_column_range_is_not_found(client, task_id, version):
    diagnostics = outcome(client.get(f"/fhir/Task/{task_id}/_history/{version}", headers=ADMIN),
                          404, "not-found")
    assert version in diagnostics
    ok(client.get(f"/fhir/Task/{task_id}/_history/1", headers=ADMIN))


@pytest.mark.parametrize(("name", "value"), [
    ("identifier", "a\x00b"), ("identifier", "sys\x00|code"), ("_id", "abc\x00"), ("status", "\x00"),
    ("group-identifier", "x\x00"), ("business-status", "a,b\x00"), ("patient", "Patient/p\x00"),
    ("_lastUpdated", "gt2026\x00"),
])
def test_nul_in_a_search_value_is_invalid_and_named(client, task_id, name, value):
    for response in (client.get("/fhir/Task", params={name: value}, headers=SITE_A),
                     client.post("/fhir/Task/_search", data={name: value}, headers=SITE_A)):
        outcome(response, 400, "invalid")
        assert _issue(response)["expression"] == [name]


def test_nul_in_a_history_parameter_is_invalid_and_named(client, task_id):
    response = client.get("/fhir/Task/_history", params={"_since": "2026\x00"}, headers=ADMIN)
    outcome(response, 400, "invalid")
    assert _issue(response)["expression"] == ["_since"]


def test_an_invalid_id_in_search_is_invalid(client, task_id):
    response = client.get("/fhir/Task", params={"_id": "a b"}, headers=SITE_A)
    outcome(response, 400, "invalid")
    assert _issue(response)["expression"] == ["_id"]
    assert [e["resource"]["id"] for e in ok(client.get("/fhir/Task", params={"_id": task_id},
                                                       headers=SITE_A))["entry"]] == [task_id]


@pytest.mark.parametrize("value", [
    "gt9999-12-31T23:59:59-23:59", "lt0001-01-01T00:00:00+23:59", "9999-12-31T23:59-10:00",
    "ge9999-12-31-05:00", "9999-12", "9999",
])
def test_a_date_beyond_the_representable_range_is_invalid(client, task_id, value):
    """Year 9999 ends where Python's datetime does; a zone that carries a bound past it (or before
    year 1) is refused as an OperationOutcome, not a 500 problem+json."""
    for name, path in (("_lastUpdated", "/fhir/Task"), ("modified", "/fhir/Task"),
                       ("_since", "/fhir/Task/_history")):
        if name == "_since" and value[:2] in ("gt", "lt", "ge"):
            continue
        response = client.get(path, params={name: value}, headers=ADMIN)
        if response.status_code == 200:  # a range entirely within the representable years
            assert value in ("9999-12", "9999"), value
            continue
        outcome(response, 400, "invalid")
        assert _issue(response)["expression"] == [name]


def test_dates_at_the_edges_still_work(client, task_id):
    earliest = ok(client.get("/fhir/Task", params={"_lastUpdated": "lt0001-01-01"}, headers=ADMIN))
    assert earliest.get("entry") is None
    assert ok(client.get("/fhir/Task", params={"_lastUpdated": "le9999-12-31T23:59:59Z"},
                         headers=ADMIN))["entry"]


@pytest.mark.parametrize("key", [[1, "a\x00"], [2**70, "abc"], [1, "a" * 65]])
def test_a_forged_cursor_key_is_invalid(client, task_id, key):
    token = base64.urlsafe_b64encode(orjson.dumps({"v": 1, "p": [], "k": key}) if key[0] < 2**63 else
                                     b'{"v":1,"p":[],"k":[%d,"abc"]}' % key[0]).rstrip(b"=").decode()
    response = client.get("/fhir/Task", params={"_cursor": token}, headers=ADMIN)
    outcome(response, 400, "invalid")
    assert _issue(response)["expression"] == ["_cursor"]


def test_an_unexpected_failure_is_still_an_operation_outcome(client, monkeypatch, caplog):
    """Whatever the cause, a FHIR client gets an OperationOutcome (500 ``exception``), never
    problem+json; the log names the exception class only (its text may quote the request)."""
    def broken(*_args: object, **_kwargs: object) -> None:
        raise OverflowError("date value out of range: MRN-SECRET")

    monkeypatch.setattr("gateway.fhir_api.routes.read_current", broken)
    outcome(client.get("/fhir/Task/abc", headers=ADMIN), 500, "exception")
    assert "OverflowError" in caplog.text and "MRN-SECRET" not in caplog.text
