"""Issue 11, part 1: identity is never shared between tenants (SQLite and PostgreSQL).

The exact sequence from the issue, through the API on the demo configuration: acme-bio's order at
site-a records DIN ``A999921123456``; nova-cell's order at site-b then sends the same DIN.  That
second collection is refused ``422 din-in-use`` (safety log, nothing stored), and nothing nova-cell
or site-b can read, current or historical, is acme-bio's.  Likewise a lot of an autologous product
belongs to one order.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.errors import CoiError
from gateway.intake import identity_claims
from gateway.intake.events import accept_event
from gateway.store.db import write_session
from gateway.store.tables import IdentityClaimRow
from mappings.events import EventIn
from tests.conftest import (
    ACME,
    ACME_COI,
    ADMIN,
    NOVA,
    NOVA_COI,
    SITE_A,
    SITE_B,
    event_body,
    isbt_coi,
    nova_order_body,
    order_body,
)
from tests.integration.test_fhir_api import ok, outcome

DIN = "A999921123456"
DIN_WITH_CHECK = "A9999211234563"  # the same DIN with its check character (the stored normal form)
BDP = "BiologicallyDerivedProduct"
TYPES = ("Task", "ServiceRequest", "Observation", "Provenance", BDP, "Patient", "Organization",
         "Practitioner")


def _collection(event_id: str, din: str, coi: str = ACME_COI,
                at: str = "2026-12-01T14:00:00Z") -> dict[str, Any]:
    return event_body(event_id, "collection.completed", at,
                      {"collected_at": "2026-12-01T13:30:00Z", "din": din,
                       "measurements": [{"code": "viability_pct", "value": 96, "unit": "%"}]}, coi=coi)


def _post(client: Any, order_id: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    return client.post(f"/v1/orders/{order_id}/events", json=body, headers=headers)


def _entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


def _acme_products(client: Any) -> list[dict[str, Any]]:
    """Every version of every product site-a can see (its type history)."""
    return _entries(ok(client.get(f"/fhir/{BDP}/_history", params={"_count": 100}, headers=SITE_A)))


def _coi(resource: dict[str, Any]) -> str:
    [value] = [i["value"] for i in resource["identifier"] if i["system"].endswith("ChainOfIdentity")
               or i["system"].endswith("/coi")]
    return str(value)


def test_the_issue_sequence_din_reuse_is_refused_and_nothing_crosses_tenants(client):
    # acme-bio's order at site-a records the DIN
    assert client.post("/v1/orders", json=order_body("ORD-1001"), headers=ACME).status_code == 201
    assert _post(client, "ORD-1001", _collection("EVT-3", DIN), ACME).status_code == 201
    acme_sr = ok(client.get("/fhir/ServiceRequest", headers=SITE_A))["entry"][0]["resource"]["id"]

    # nova-cell places its own order at site-b and sends the same DIN: refused
    assert client.post("/v1/orders", json=nova_order_body("NOVA-2001"), headers=NOVA).status_code == 201
    before = client.get("/v1/orders/NOVA-2001", headers=NOVA).json()
    for event_id, din in (("NOVA-C1", DIN), ("NOVA-C2", DIN_WITH_CHECK), ("NOVA-C3", f"  {DIN} ")):
        refused = _post(client, "NOVA-2001", _collection(event_id, din, coi=NOVA_COI), NOVA)
        assert refused.status_code == 422, refused.text
        problem = refused.json()
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert problem["code"] == "din-in-use"
        assert [(e["pointer"], e["reason"]) for e in problem["errors"]] == [
            ("/data/din", "already recorded on another order")]
        assert "ORD-1001" not in refused.text and "acme" not in refused.text  # never names the holder
    assert client.get("/v1/orders/NOVA-2001", headers=NOVA).json() == before  # nothing stored

    # the safety log has each attempt, ids only
    log = client.get("/v1/admin/safety-log", headers=ADMIN).json()["items"]
    assert [(e["code"], e["manufacturer_id"], e["order_id"], e["event_id"]) for e in log] == [
        ("din-in-use", "nova-cell", "NOVA-2001", f"NOVA-C{n}") for n in (3, 2, 1)]
    for entry in log:
        assert entry["presented_coi"] == NOVA_COI
        assert "ORD-1001" in entry["detail"] and DIN_WITH_CHECK in entry["detail"]
        for phi in ("Zyxwvut", "Quillon", "MRN-0042", "1971-03-09"):
            assert phi not in str(entry)

    # site-a's product: the current version and every version in its history are acme-bio's
    versions = _acme_products(client)
    assert versions, "site-a sees its product"
    product_ids = {v["id"] for v in versions}
    for version in versions:
        assert _coi(version) == ACME_COI
        assert version["request"] == [{"reference": f"ServiceRequest/{acme_sr}"}]
    for product_id in product_ids:
        current = ok(client.get(f"/fhir/{BDP}/{product_id}", headers=SITE_A))
        assert _coi(current) == ACME_COI
        history = _entries(ok(client.get(f"/fhir/{BDP}/{product_id}/_history", headers=SITE_A)))
        assert {_coi(v) for v in history} == {ACME_COI}

        # nova-cell and site-b: 404 on read, vread and _history of acme-bio's product
        for headers in (NOVA, SITE_B):
            outcome(client.get(f"/fhir/{BDP}/{product_id}", headers=headers), 404, "not-found")
            outcome(client.get(f"/fhir/{BDP}/{product_id}/_history", headers=headers), 404, "not-found")
            for version in history:
                vid = version["meta"]["versionId"]
                outcome(client.get(f"/fhir/{BDP}/{product_id}/_history/{vid}", headers=headers), 404,
                        "not-found")

    # nova-cell's order may go on with its own DIN: another product, its own
    other = "A999921654321"
    assert _post(client, "NOVA-2001", _collection("NOVA-C4", other, coi=NOVA_COI), NOVA).status_code == 201
    nova_products = _entries(ok(client.get(f"/fhir/{BDP}/_history", headers=NOVA)))
    assert nova_products and not {p["id"] for p in nova_products} & product_ids

    # type history of every kind, read and search: nothing of acme-bio's for nova-cell or site-b
    acme_ids = {(rtype, r["id"]) for rtype in TYPES
                for r in _entries(ok(client.get(f"/fhir/{rtype}/_history", headers=ACME)))}
    assert (BDP, next(iter(product_ids))) in acme_ids
    for headers in (NOVA, SITE_B):
        for rtype in TYPES:
            for path in (f"/fhir/{rtype}/_history", f"/fhir/{rtype}"):
                seen = _entries(ok(client.get(path, params={"_count": 100}, headers=headers)))
                assert not {(rtype, r["id"]) for r in seen} & acme_ids, (path, headers)
                assert ACME_COI not in str(seen), (path, headers)
        # no system-wide history is served at all
        assert client.get("/fhir/_history", headers=headers).status_code == 404


def test_the_same_order_may_repeat_its_own_din(client):
    assert client.post("/v1/orders", json=order_body("ORD-R"), headers=ACME).status_code == 201
    first = _collection("R-1", DIN)
    assert _post(client, "ORD-R", first, ACME).status_code == 201
    assert _post(client, "ORD-R", first, ACME).status_code == 200  # identical replay
    later = _collection("R-2", DIN_WITH_CHECK, at="2026-12-01T15:00:00Z")  # a later collection event
    assert _post(client, "ORD-R", later, ACME).status_code == 201
    assert client.get("/v1/admin/safety-log", headers=ADMIN).json()["items"] == []


def test_a_din_is_refused_on_another_order_of_the_same_manufacturer_too(client):
    assert client.post("/v1/orders", json=order_body("ORD-D1"), headers=ACME).status_code == 201
    second = order_body("ORD-D2", coi=isbt_coi(2), patient={**order_body()["patient"], "mrn": "MRN-0043"})
    assert client.post("/v1/orders", json=second, headers=ACME).status_code == 201
    assert _post(client, "ORD-D1", _collection("D-1", DIN), ACME).status_code == 201
    refused = _post(client, "ORD-D2", _collection("D-2", DIN, coi=isbt_coi(2)), ACME)
    assert refused.status_code == 422 and refused.json()["code"] == "din-in-use"


def _lot_event(event_id: str, type_: str, lot: str, coi: str, at: str) -> dict[str, Any]:
    data: dict[str, Any] = {"lot": lot}
    if type_ == "manufacturing.completed":
        data["expires_at"] = "2027-03-01T00:00:00Z"
    return event_body(event_id, type_, at, data, coi=coi)


def _collected(client: Any, order_id: str, coi: str, din: str, headers: dict[str, str]) -> None:
    assert _post(client, order_id, _collection(f"{order_id}-C", din, coi=coi), headers).status_code == 201


def test_an_autologous_lot_belongs_to_one_order(client, clock):
    """acme-bio's order at site-a is made in lot LOT-77; acme-bio's order at site-b may not use it
    (``manufacturing.started`` nor ``manufacturing.completed``); nova-cell assigns its own lots."""
    patient_b = {**order_body()["patient"], "mrn": "MRN-B-1"}
    assert client.post("/v1/orders", json=order_body("LOT-A"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=order_body("LOT-B", coi=isbt_coi(5), site_id="site-b",
                                                     patient=patient_b), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=nova_order_body("LOT-N"), headers=NOVA).status_code == 201
    _collected(client, "LOT-A", ACME_COI, "A999921000001", ACME)
    _collected(client, "LOT-B", isbt_coi(5), "A999921000002", ACME)
    _collected(client, "LOT-N", NOVA_COI, "A999921000003", NOVA)
    clock.set(datetime(2026, 12, 22, tzinfo=UTC))  # the lot events below have happened by now

    started = _lot_event("A-M1", "manufacturing.started", "LOT-77", ACME_COI, "2026-12-02T09:00:00Z")
    assert _post(client, "LOT-A", started, ACME).status_code == 201
    done = _lot_event("A-M2", "manufacturing.completed", "LOT-77", ACME_COI, "2026-12-20T09:00:00Z")
    assert _post(client, "LOT-A", done, ACME).status_code == 201  # the same order repeats its lot

    for type_ in ("manufacturing.started", "manufacturing.completed"):
        body = _lot_event(f"B-{type_}", type_, "LOT-77", isbt_coi(5), "2026-12-21T09:00:00Z")
        refused = _post(client, "LOT-B", body, ACME)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "lot-in-use"
        assert [e["pointer"] for e in refused.json()["errors"]] == ["/data/lot"]
    assert [e["code"] for e in client.get("/v1/admin/safety-log", headers=ADMIN).json()["items"]] == [
        "lot-in-use", "lot-in-use"]
    assert _post(client, "LOT-B", _lot_event("B-ok", "manufacturing.started", "LOT-78", isbt_coi(5),
                                             "2026-12-21T09:00:00Z"), ACME).status_code == 201

    # lots are assigned per manufacturer: nova-cell's LOT-77 is another lot, and another product
    nova = _lot_event("N-M1", "manufacturing.started", "LOT-77", NOVA_COI, "2026-12-02T09:00:00Z")
    assert _post(client, "LOT-N", nova, NOVA).status_code == 201
    acme_products = {r["id"] for r in _entries(ok(client.get(f"/fhir/{BDP}/_history", headers=ACME)))}
    nova_products = {r["id"] for r in _entries(ok(client.get(f"/fhir/{BDP}/_history", headers=NOVA)))}
    assert acme_products and nova_products and not acme_products & nova_products
    # and site-b sees none of site-a's products although both are acme-bio's
    site_a = {r["id"] for r in _entries(ok(client.get(f"/fhir/{BDP}/_history", headers=SITE_A)))}
    site_b = {r["id"] for r in _entries(ok(client.get(f"/fhir/{BDP}/_history", headers=SITE_B)))}
    assert site_a and site_b and not site_a & site_b


@pytest.mark.parametrize("lot", [" LOT-77", "LOT-77 ", "LOT-77\u200b", "\u202eLOT-77", "LOT\u00ad-77",
                                 "LOT-77\t", "LOT-77\u2028", "   "])
def test_a_lot_that_only_looks_like_another_is_refused(client, clock, lot):
    """A lot padded with blanks or carrying invisible characters (zero-width space, bidi controls,
    soft hyphen) displays as ``LOT-77`` but would be another claim, so it would slip past
    ``lot-in-use``: it is refused ``422 validation-failed`` at ``/data/lot`` and nothing is stored."""
    patient_b = {**order_body()["patient"], "mrn": "MRN-B-1"}
    assert client.post("/v1/orders", json=order_body("LOT-A"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=order_body("LOT-B", coi=isbt_coi(5), site_id="site-b",
                                                     patient=patient_b), headers=ACME).status_code == 201
    _collected(client, "LOT-A", ACME_COI, "A999921000001", ACME)
    _collected(client, "LOT-B", isbt_coi(5), "A999921000002", ACME)
    clock.set(datetime(2026, 12, 22, tzinfo=UTC))
    started = _lot_event("A-M1", "manufacturing.started", "LOT-77", ACME_COI, "2026-12-02T09:00:00Z")
    assert _post(client, "LOT-A", started, ACME).status_code == 201
    for type_ in ("manufacturing.started", "manufacturing.completed"):
        refused = _post(client, "LOT-B", _lot_event(f"B-{type_}", type_, lot, isbt_coi(5),
                                                    "2026-12-21T09:00:00Z"), ACME)
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "validation-failed"
        assert [e["pointer"] for e in refused.json()["errors"]] == ["/data/lot"]
    assert client.get("/v1/orders/LOT-B", headers=ACME).json()["status"] == "collected"
    # a lot with inner spaces or slashes is an ordinary lot
    ordinary = _lot_event("B-ok", "manufacturing.started", "LOT 2026/77", isbt_coi(5), "2026-12-21T09:00:00Z")
    assert _post(client, "LOT-B", ordinary, ACME).status_code == 201


@pytest.mark.parametrize("mrn", [" MRN-0042", "MRN-0042 ", "MRN\u200b-0042", "\u202eMRN-0042", "MRN\r0042",
                                 "MRN\t0042", "   "])
def test_an_mrn_that_only_looks_like_another_is_refused(client, mrn):
    """The MRN names the patient at the site and is compared exactly (a CoI belongs to one MRN): one
    padded with blanks, whitespace only, or carrying control or invisible characters was accepted."""
    patient = {**order_body()["patient"], "mrn": mrn}
    refused = client.post("/v1/orders", json=order_body("ORD-M", coi=isbt_coi(9), patient=patient),
                          headers=ACME)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "validation-failed"
    assert [e["pointer"] for e in refused.json()["errors"]] == ["/patient/mrn"]
    assert client.get("/v1/orders/ORD-M", headers=ACME).status_code == 404
    patient = {**order_body()["patient"], "mrn": "MRN 0042/B"}  # inner blanks and slashes are fine
    assert client.post("/v1/orders", json=order_body("ORD-M", coi=isbt_coi(9), patient=patient),
                       headers=ACME).status_code == 201


def test_release_claims_of_event_frees_the_din_for_another_order(client, engine):
    assert client.post("/v1/orders", json=order_body("ORD-X"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=nova_order_body("NOVA-X"), headers=NOVA).status_code == 201
    assert _post(client, "ORD-X", _collection("X-1", DIN), ACME).status_code == 201
    with engine.connect() as conn:
        [claim] = conn.execute(sa.select(IdentityClaimRow)).all()
    assert (claim.kind, claim.scope, claim.value) == ("din", "", DIN_WITH_CHECK)
    with write_session(engine) as session:
        assert identity_claims.release_claims_of_event(session.connection(), claim.event_pk) == 1
        assert identity_claims.release_claims_of_event(session.connection(), claim.event_pk) == 0
    assert _post(client, "NOVA-X", _collection("NX-1", DIN, coi=NOVA_COI), NOVA).status_code == 201
    with engine.connect() as conn:
        holders = conn.execute(sa.select(IdentityClaimRow.order_pk, IdentityClaimRow.event_pk)).all()
    assert len(holders) == 1 and holders[0].event_pk != claim.event_pk


def test_after_a_release_the_orders_remaining_events_reclaim_their_din(client, engine):
    """Retraction frees what the retracted event claimed; a DIN a remaining event of the same order
    records is claimed again (by that event), so it stays refused on other orders."""
    from gateway.intake.order_history import lock_order

    assert client.post("/v1/orders", json=order_body("ORD-Y"), headers=ACME).status_code == 201
    assert _post(client, "ORD-Y", _collection("Y-1", DIN), ACME).status_code == 201
    assert _post(client, "ORD-Y", _collection("Y-2", DIN, at="2026-12-01T15:00:00Z"), ACME).status_code == 201
    settings = client.app.state.context.settings
    with write_session(engine) as session:
        conn = session.connection()
        order = lock_order(conn, "acme-bio", "ORD-Y")
        assert order is not None
        events = conn.execute(sa.text("SELECT id, event_id, type, data FROM order_event WHERE order_pk = :o "
                                      "AND event_id = 'Y-2'"), {"o": order.pk}).all()
        [first] = conn.execute(sa.select(IdentityClaimRow.event_pk)).scalars().all()
        assert identity_claims.release_claims_of_event(conn, first) == 1
        remaining = [(e.id, e.event_id, e.type, e.data if isinstance(e.data, dict) else json.loads(e.data))
                     for e in events]
        identity_claims.reclaim(conn, order, settings.product("acme-bio", order.product_code), remaining,
                                client.app.state.context.now())
    with engine.connect() as conn:
        assert conn.execute(sa.select(IdentityClaimRow.event_pk)).scalars().all() == [remaining[0][0]]
    assert client.post("/v1/orders", json=nova_order_body("NOVA-Y"), headers=NOVA).status_code == 201
    refused = _post(client, "NOVA-Y", _collection("NY-1", DIN, coi=NOVA_COI), NOVA)
    assert refused.status_code == 422 and refused.json()["code"] == "din-in-use"


def test_the_database_refuses_a_second_holder(client, engine):
    """The constraint, not the check, is what holds: a second row for one DIN fails to insert."""
    assert client.post("/v1/orders", json=order_body("ORD-U"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=nova_order_body("NOVA-U"), headers=NOVA).status_code == 201
    assert _post(client, "ORD-U", _collection("U-1", DIN), ACME).status_code == 201
    other = _collection("NU-1", "A999921000009", coi=NOVA_COI)
    assert _post(client, "NOVA-U", other, NOVA).status_code == 201
    with engine.connect() as conn:
        held, other = conn.execute(sa.select(IdentityClaimRow).order_by(IdentityClaimRow.id)).all()
    table = IdentityClaimRow.__table__  # type: ignore[attr-defined]
    copy = {c: getattr(held, c) for c in ("kind", "scope", "value", "value_sha256", "claimed_at")}
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(table.insert().values(**copy, order_pk=other.order_pk, event_pk=other.event_pk))


def test_two_orders_racing_for_one_din_one_wins(client):
    """Both transactions pass the check; the constraint makes the loser retry, and its retry refuses."""
    context = client.app.state.context
    assert client.post("/v1/orders", json=order_body("RACE-A"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=nova_order_body("RACE-N"), headers=NOVA).status_code == 201
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def post(manufacturer_id: str, order_id: str, coi: str) -> None:
        event = EventIn.model_validate(_collection(f"{order_id}-C", DIN, coi=coi))
        barrier.wait()
        try:
            accept_event(context, manufacturer_id, order_id, event)
            outcomes.append("accepted")
        except CoiError as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=post, args=("acme-bio", "RACE-A", ACME_COI)),
               threading.Thread(target=post, args=("nova-cell", "RACE-N", NOVA_COI))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["accepted", "din-in-use"]
    log = client.get("/v1/admin/safety-log", headers=ADMIN).json()["items"]
    assert [e["code"] for e in log] == ["din-in-use"]


def test_a_check_that_missed_the_other_order_is_settled_by_the_constraint(client, monkeypatch):
    """The race made deterministic: the first attempt's check does not see the holder (as when
    both transactions check before either inserts); its INSERT fails on the constraint, intake
    retries, and the retry refuses ``din-in-use``; nothing of the loser's event is stored."""
    assert client.post("/v1/orders", json=order_body("ORD-Z"), headers=ACME).status_code == 201
    assert client.post("/v1/orders", json=nova_order_body("NOVA-Z"), headers=NOVA).status_code == 201
    assert _post(client, "ORD-Z", _collection("Z-1", DIN), ACME).status_code == 201
    real_check = identity_claims.check
    calls: list[int] = []

    def blind_first(conn: Any, order: Any, product: Any, event_id: str, event_type: str,
                    data: dict[str, Any], now: Any) -> tuple[identity_claims.Claim, ...]:
        calls.append(1)
        if len(calls) == 1:
            return identity_claims.claims_of(product, order.manufacturer_id, event_type, data)
        return real_check(conn, order, product, event_id, event_type, data, now)

    monkeypatch.setattr(identity_claims, "check", blind_first)
    before = client.get("/v1/orders/NOVA-Z", headers=NOVA).json()
    refused = _post(client, "NOVA-Z", _collection("NZ-1", DIN, coi=NOVA_COI), NOVA)
    assert refused.status_code == 422 and refused.json()["code"] == "din-in-use"
    assert len(calls) == 2
    assert client.get("/v1/orders/NOVA-Z", headers=NOVA).json() == before
