"""No patient name, birth date or MRN reaches the logs during a full flow, refusals included."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from tests.conftest import ACME, ADMIN, event_body, order_body

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
FAMILY, GIVEN, BIRTH, MRN = "Zyxwvutsrq", "Quillonette", "1971-03-09", "MRN-PHI-7731"


def at(**delta: float) -> str:
    return (T0 + timedelta(**delta)).isoformat()


def test_full_flow_logs_no_phi(client, clock, caplog):
    clock.set(T0)
    body = order_body("LOG-1")
    body["patient"] = {"mrn": MRN, "family": FAMILY, "given": [GIVEN], "birth_date": BIRTH, "sex": "female"}
    with caplog.at_level(logging.DEBUG):
        assert client.post("/v1/orders", json=body, headers=ACME).status_code == 201
        assert client.post("/v1/orders", json=body, headers=ACME).status_code == 200
        conflicting = {**body, "priority": "urgent"}
        assert client.post("/v1/orders", json=conflicting, headers=ACME).status_code == 409
        other = order_body("LOG-2")
        other["patient"] = {**body["patient"], "mrn": MRN + "-B", "family": FAMILY + "B"}
        assert client.post("/v1/orders", json=other, headers=ACME).status_code == 422  # coi-in-use
        bad = {**body, "order_id": "LOG-3", "patient": {**body["patient"], "nickname": GIVEN}}
        assert client.post("/v1/orders", json=bad, headers=ACME).status_code == 422
        steps = [
            ("order.confirmed", at(hours=1), {}),
            ("collection.completed", at(days=5), {"collected_at": at(days=5), "din": "A999921123456"}),
            ("manufacturing.started", at(days=6), {}),
            ("manufacturing.completed", at(days=9), {"lot": "L1", "expires_at": at(days=90)}),
            ("release.passed", at(days=10), {}),
        ]
        clock.set(T0 + timedelta(days=30))  # the events are posted once they happened
        for i, (type_, occurred, data) in enumerate(steps):
            r = client.post(
                "/v1/orders/LOG-1/events", json=event_body(f"L{i}", type_, occurred, data), headers=ACME
            )
            assert r.status_code == 201, r.text
        mismatch = {
            **event_body("LX", "order.on_hold", at(days=11), {"reason": "x"}),
            "coi": "CHA999923A1B2C4",
        }
        assert client.post("/v1/orders/LOG-1/events", json=mismatch, headers=ACME).status_code == 422
        assert client.get("/v1/orders/LOG-1", headers=ACME).status_code == 200
        assert client.get("/v1/admin/safety-log", headers=ADMIN).status_code == 200
        client.post("/v1/orders", content=b"{", headers={**ACME, "content-type": "application/json"})
    # The message and every field a logger added (``extra``); the record's own bookkeeping (times,
    # thread and process ids) is left out: its digits could contain "1971" by chance.
    standard = set(vars(logging.makeLogRecord({})))
    text = "\n".join(f"{r.getMessage()} {({k: v for k, v in vars(r).items() if k not in standard})}"
                     for r in caplog.records)
    assert caplog.records, "the flow should log something"
    for secret in (FAMILY, GIVEN, BIRTH, MRN, "1971"):
        assert secret not in text
