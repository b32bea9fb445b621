"""The order found by the site's own number (issue 13): once a site sent NA, it may echo its number in
ORC-3.1 (or SCH-27.1) instead of our order id in ORC-2; never across sites."""

from __future__ import annotations

from gateway.inbound.requests import IncomingRequest, receive
from tests.conftest import ACME, isbt_coi, order_body
from tests.integration.test_inbound_mllp import checked, place, sent, status
from tests.integration.test_inbound_mllp import context as context  # noqa: F401  (the fixture)
from tests.integration.test_inbound_mllp_support import Site, listening, message, segments


def only_orc_3(order_id: str, number: str) -> dict[str, str]:
    """``message`` replacements: ORC-2 and OBR-2 emptied, ORC-3 and OBR-3 the site's own number."""
    return {f"|{order_id}^CGT-GATEWAY|{order_id}^acme-bio|": f"||{number}^EPIC|"}


def test_after_na_a_cancel_naming_only_the_sites_number_in_orc_3_is_applied(client, context, engine):
    place(client, "ORD-N1")
    assert client.get("/v1/orders/ORD-N1", headers=ACME).json()["site_order_number"] is None
    with listening(context) as port, Site(port) as site:
        assert checked(site.send(sent(message("oml-o21-order-number", "ORD-N1", "NA-N1")))) == ["CA", "AA"]
        # the order views show the number learned
        assert client.get("/v1/orders/ORD-N1", headers=ACME).json()["site_order_number"] == "SA-778812"
        listed = client.get("/v1/orders", headers=ACME).json()["items"]
        assert [o["site_order_number"] for o in listed if o["order_id"] == "ORD-N1"] == ["SA-778812"]
        cancel = message("oml-o21-cancel", "ORD-N1", "CA-N1", **only_orc_3("ORD-N1", "SA-778812"))
        orc = segments(cancel)["ORC"][0]
        assert (orc[2], orc[3].split("^")[0]) == ("", "SA-778812")
        acks = checked(site.send(sent(cancel)))
    assert acks == ["CA", "AA"]
    assert status(client, "ORD-N1") == "cancelled"


def test_orc_3_holding_our_own_order_id_finds_the_order(client, context):
    place(client, "ORD-N2")
    with listening(context) as port, Site(port) as site:
        hold = message("oml-o21-hold", "ORD-N2", "HD-N2", **only_orc_3("ORD-N2", "ORD-N2"))
        assert checked(site.send(sent(hold))) == ["CA", "AA"]
    assert status(client, "ORD-N2") == "on_hold"


def test_an_unknown_number_in_orc_3_is_an_unknown_order(client, context):
    place(client, "ORD-N3")
    with listening(context) as port, Site(port) as site:
        cancel = message("oml-o21-cancel", "ORD-N3", "CA-N3", **only_orc_3("ORD-N3", "SA-NOPE"))
        acks = site.send(sent(cancel))
    assert checked(acks)[-1] == "AE"
    assert segments(acks[-1])["ERR"][0][3].split("^")[0] == "204"
    assert status(client, "ORD-N3") == "placed"


def test_the_sites_number_never_finds_another_sites_order(client, context, clock):
    place(client, "ORD-N4")
    learned = receive(context, IncomingRequest(site_id="site-a", kind="order_number", channel="hl7v2",
                                               order_ref="ORD-N4", site_order_ref="SA-4",
                                               requested={"site_order_number": "SA-4"}))
    assert learned.request is not None and learned.request.state == "applied"
    other = order_body("ORD-N5", site_id="site-b", coi=isbt_coi(401))
    response = client.post("/v1/orders", json=other, headers=ACME)
    assert response.status_code == 201, response.text
    for site_id, ref in (("site-b", "SA-4"), ("site-b", "")):
        refused = receive(context, IncomingRequest(site_id=site_id, kind="cancel", channel="hl7v2",
                                                   order_ref=ref, site_order_ref="SA-4"))
        assert refused.refusal is not None and refused.refusal.code == "unknown-order"
    found = receive(context, IncomingRequest(site_id="site-a", kind="cancel", channel="hl7v2", order_ref="",
                                             site_order_ref="SA-4"))
    assert found.request is not None and found.request.order_id == "ORD-N4"
    assert status(client, "ORD-N4") == "cancelled"
    assert status(client, "ORD-N5") == "placed"
