"""Inbound HL7v2 over a real loopback MLLP connection: python-hl7's MLLPClient as the site engine, the
site-a listener (``gateway.inbound.mllp.InboundListeners``) in front of the real site-request service.

Every message sent and every ACK and answer received validates with hl7apy STRICT for 2.5.1.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from gateway.inbound.requests import decide_request
from gateway.store.tables import SafetyLogRow
from mappings.profile.delivery import DeliverySettings, MllpEndpoint
from tests.conftest import ACME, ACME_COI, isbt_coi, order_body
from tests.integration.test_inbound_mllp_support import (
    Site,
    ack_code,
    listening,
    message,
    order_controls,
    segments,
    site_outbox,
)
from tests.unit.inbound_cases import validate_strict

JOURNEY = json.loads((Path(__file__).parents[2] / "fixtures/events/journey-autologous.json").read_text())


@pytest.fixture
def context(client):
    """The app's context, site-a's HL7v2 answers queued for its engine (nothing delivers them here)."""
    context = client.app.state.context
    delivery = DeliverySettings(mllp=MllpEndpoint(host="127.0.0.1", port=9))
    context.profiles["site-a"] = context.profiles["site-a"].model_copy(update={"delivery": delivery})
    return context


def place(client, order_id: str, coi: str = ACME_COI) -> None:
    response = client.post("/v1/orders", json=order_body(order_id, coi=coi), headers=ACME)
    assert response.status_code == 201, response.text


def journey_until(client, order_id: str, coi: str, last_type: str) -> None:
    """The demo journey's order and its events up to and including the first ``last_type``."""
    order = {**JOURNEY["order"], "order_id": order_id, "coi": coi}
    assert client.post("/v1/orders", json=order, headers=ACME).status_code == 201
    for event in JOURNEY["events"]:
        event = {**event, "coi": coi}
        response = client.post(f"/v1/orders/{order_id}/events", json=event, headers=ACME)
        assert response.status_code == 201, response.text
        if event["type"] == last_type:
            return
    raise AssertionError(last_type)


def checked(acks: list[str]) -> list[str]:
    for ack in acks:
        validate_strict(ack)
    return [ack_code(a) for a in acks]


def sent(er7: str) -> str:
    validate_strict(er7)
    return er7


def status(client, order_id: str) -> str:
    return client.get(f"/v1/orders/{order_id}", headers=ACME).json()["status"]


def test_a_cancel_inside_the_window_is_applied_at_once_and_answered_cr(client, context, engine):
    place(client, "ORD-1")
    with listening(context) as port, Site(port) as site:
        acks = site.send(sent(message("oml-o21-cancel", "ORD-1", "CA-1")))
    assert checked(acks) == ["CA", "AA"]
    assert segments(acks[0])["MSA"][0][2] == "CA-1"
    assert status(client, "ORD-1") == "cancelled"
    assert order_controls(engine, "ORD-1")[-1] == "CR"
    for payload in site_outbox(engine):
        validate_strict(payload)


def test_original_mode_gets_one_ack(client, context):
    place(client, "ORD-2")
    original = message("oml-o21-hold", "ORD-2", "HD-1").replace("|||AL|AL||", "|||||", 1)
    with listening(context) as port, Site(port) as site:
        acks = site.send(sent(original), answers=1)
        assert checked(acks) == ["AA"]
        # and the site's resend is answered with the very same bytes
        assert site.send(original, answers=1) == acks


def test_a_duplicate_is_answered_with_the_stored_ack_and_processed_once(client, context, engine):
    place(client, "ORD-3")
    cancel = sent(message("oml-o21-cancel", "ORD-3", "DUP-1"))
    with listening(context) as port:
        with Site(port) as site:
            first = site.send(cancel)
        with Site(port) as site:  # a resend on a new connection
            again = site.send(cancel)
    assert again == first
    assert order_controls(engine, "ORD-3").count("CR") == 1
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM site_request WHERE order_id = 'ORD-3'")).scalar()
    assert count == 1


def test_hold_then_release(client, context, engine):
    place(client, "ORD-4")
    with listening(context) as port, Site(port) as site:
        assert checked(site.send(sent(message("oml-o21-hold", "ORD-4", "HD-4")))) == ["CA", "AA"]
        assert status(client, "ORD-4") == "on_hold"
        assert checked(site.send(sent(message("oml-o21-release-hold", "ORD-4", "RL-4")))) == ["CA", "AA"]
    assert status(client, "ORD-4") != "on_hold"
    controls = order_controls(engine, "ORD-4")
    assert controls.index("HR") < controls.index("OR")


def test_the_sites_order_number_is_learned_and_used_in_orc_3(client, context, engine):
    place(client, "ORD-5")
    with listening(context) as port, Site(port) as site:
        assert checked(site.send(sent(message("oml-o21-order-number", "ORD-5", "NA-5")))) == ["CA", "AA"]
        assert checked(site.send(sent(message("oml-o21-hold", "ORD-5", "HD-5")))) == ["CA", "AA"]
    answer = next(p for p in reversed(site_outbox(engine)) if segments(p)["ORC"][0][1] == "HR")
    validate_strict(answer)
    assert segments(answer)["ORC"][0][3].split("^")[0] == "SA-778812"


def test_a_cancel_after_manufacturing_started_waits_for_the_manufacturer_and_a_decline_is_uc(
        client, context, engine):
    coi = isbt_coi(61)
    journey_until(client, "ORD-6", coi, "manufacturing.started")
    before = status(client, "ORD-6")
    with listening(context) as port, Site(port) as site:
        acks = site.send(sent(message("oml-o21-cancel", "ORD-6", "CA-6", coi=coi)))
    assert checked(acks) == ["CA", "AA"]
    assert "awaiting-manufacturer" in segments(acks[1])["MSA"][0][3]
    request_id = segments(acks[1])["MSA"][0][3].split()[1]
    decide_request(context, "acme-bio", request_id, "decline", "Manufacturing has started")
    assert status(client, "ORD-6") == before
    answer = site_outbox(engine)[-1]
    validate_strict(answer)
    orc = segments(answer)["ORC"][0]
    assert orc[1] == "UC"
    assert "Manufacturing has started" in answer


def test_a_change_moves_the_date_through_the_manufacturer(client, context, engine):
    place(client, "ORD-7")
    with listening(context) as port, Site(port) as site:
        acks = site.send(sent(message("oml-o21-change", "ORD-7", "XO-7")))
    assert checked(acks) == ["CA", "AA"]
    request_id = segments(acks[1])["MSA"][0][3].split()[1]
    decide_request(context, "acme-bio", request_id, "accept", None)
    assert order_controls(engine, "ORD-7")[-1] == "XR"


def test_infusion_done_by_ras_o17(client, context, clock):
    coi = isbt_coi(62)
    journey_until(client, "ORD-8", coi, "infusion.scheduled")
    given = (clock() - timedelta(hours=1)).strftime("%Y%m%d%H%M%S+0000")
    ras = message("ras-o17-infused", "ORD-8", "RAS-8", coi=coi,
                  **{"20261220103000-0500": given, "20261220110000-0500": given})
    with listening(context) as port, Site(port) as site:
        assert checked(site.send(sent(ras))) == ["CA", "AA"]
    assert status(client, "ORD-8") == "infused"


def test_a_coi_mismatch_is_refused_ae_and_safety_logged(client, context, engine):
    place(client, "ORD-9")
    wrong = isbt_coi(63)
    with listening(context) as port, Site(port) as site:
        acks = site.send(sent(message("oml-o21-cancel", "ORD-9", "COI-9", coi=wrong)))
    assert checked(acks) == ["CA", "AE"]
    err = segments(acks[1])["ERR"][0]
    assert err[2] == "ORC^1^4" and err[3].split("^")[0] == "207"
    assert status(client, "ORD-9") != "cancelled"
    with engine.connect() as conn:
        logged = conn.execute(sa.select(SafetyLogRow.__table__.c.code).where(
            SafetyLogRow.__table__.c.order_id == "ORD-9")).scalars().all()
    assert logged == ["coi-mismatch"]


def test_an_unknown_order_is_ae_204(client, context):
    with listening(context) as port, Site(port) as site:
        acks = site.send(sent(message("oml-o21-cancel", "NO-SUCH", "UNK-1")))
    assert checked(acks) == ["CA", "AE"]
    assert segments(acks[1])["ERR"][0][3].split("^")[0] == "204"


def test_bad_messages_are_answered_ar_and_the_listener_keeps_serving(client, context):
    place(client, "ORD-10")
    good = message("oml-o21-hold", "ORD-10", "OK-10")
    wrong_site = message("oml-o21-hold", "ORD-10", "WS-10", **{"|CGT-GATEWAY|CGTGW|": "|OTHER-GW|ELSEWHERE|"})
    wrong_version = message("oml-o21-hold", "ORD-10", "WV-10").replace("|P|2.5.1|", "|P|2.3|", 1)
    with listening(context) as port, Site(port) as site:
        assert checked(site.send(wrong_site, answers=1)) == ["CR"]
        assert checked(site.send(wrong_version, answers=1)) == ["CR"]
        garbage = site.send_raw(b"\x0bthis is not HL7\x1c\r")
        assert checked(garbage) == ["AR"] and segments(garbage[0])["MSA"][0][2] == "UNREADABLE"
        huge = message("oml-o21-hold", "ORD-10", "BIG-10") + "NTE|2|L|" + "x" * (1024 * 1024) + "\r"
        too_big = site.send_raw(b"junk before the start block\x0b" + huge.encode() + b"\x1c\r")
        assert checked(too_big) == ["CR"]
        assert segments(too_big[0])["MSA"][0][2] == "BIG-10"
        assert checked(site.send(sent(good))) == ["CA", "AA"]  # same connection, still served
    assert status(client, "ORD-10") == "on_hold"


def test_split_and_merged_frames(client, context):
    place(client, "ORD-11")
    place(client, "ORD-12", coi=isbt_coi(64))
    first = message("oml-o21-hold", "ORD-11", "SP-11").encode()
    second = message("oml-o21-hold", "ORD-12", "SP-12", coi=isbt_coi(64)).encode()
    with listening(context) as port, Site(port) as site:
        site.client.socket.sendall(b"\x0b" + first[:10])
        acks = site.send_raw(first[10:] + b"\x1c\r" + b"\x0b" + second + b"\x1c\r", answers=4)
    assert checked(acks) == ["CA", "AA", "CA", "AA"]
    assert [segments(a)["MSA"][0][2] for a in acks] == ["SP-11", "SP-11", "SP-12", "SP-12"]


def test_a_2_3_site_in_original_mode(client, context, engine):
    """site-b: HL7 2.3, original mode, the CoI in ZCG-2: one ACK per message, AR for a message that is
    not for this gateway, AE (ERR-1 at ZCG-2) for a CoI mismatch, CR for the cancel."""
    delivery = DeliverySettings(mllp=MllpEndpoint(host="127.0.0.1", port=9))
    context.profiles["site-b"] = context.profiles["site-b"].model_copy(update={"delivery": delivery})
    response = client.post("/v1/orders", json=order_body("ORD-B1", site_id="site-b"), headers=ACME)
    assert response.status_code == 201, response.text
    with listening(context, "site-b") as port, Site(port) as site:
        wrong = message("orm-o01-cancel", "ORD-B1", "B-WS-1", version="2.3", **{"|CGTGW|CGTGW|": "|X|Y|"})
        assert checked(site.send(wrong, answers=1)) == ["AR"]
        mismatch = message("orm-o01-cancel", "ORD-B1", "B-COI-1", version="2.3", coi=isbt_coi(65))
        [refused] = site.send(sent(mismatch), answers=1)
        assert checked([refused]) == ["AE"]
        assert segments(refused)["ERR"][0][1].startswith("ZCG^1^2^207")
        acks = site.send(sent(message("orm-o01-cancel", "ORD-B1", "B-CA-1", version="2.3")), answers=1)
        assert checked(acks) == ["AA"]
    assert order_controls(engine, "ORD-B1", "site-b")[-1] == "CR"
    for payload in site_outbox(engine, "site-b"):
        validate_strict(payload)
