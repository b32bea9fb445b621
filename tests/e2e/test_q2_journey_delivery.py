"""The whole autologous journey, posted over the API, reaches both demo sites' engines as each expects:
site-a (2.5.1) OML^O21 + ORU^R01 + SIU, CoI in ORC-4; site-b (2.3) ORM^O01 + ORU^R01, no SIU, CoI in
ZCG.  Every message arrives once, in order, with ORC-1/ORC-5 per event and a unique MSH-10 of at most
20 characters.  The engines are real MLLP peers; the worker is the one the configuration builds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hl7
import yaml
from sqlalchemy.engine import Engine

from gateway.bootstrap import create_app
from gateway.config import load_settings
from gateway.delivery.senders import build_delivery_worker
from tests.conftest import (
    ACME,
    TestClient,  # imported there with the httpx deprecation warning silenced
)
from tests.e2e.serving import without_delivery
from tests.integration.test_delivery_support import (
    FAST,
    ROOT,
    Peer,
    PeerLoop,
    all_finished,
    messages,
    wait_until,
)

JOURNEY = json.loads((ROOT / "fixtures" / "events" / "journey-autologous.json").read_text(encoding="utf-8"))

# (ORC-1, ORC-5) of the order message, event by event (the order itself first)
ORDER_CONTROL = [("NW", ""), ("SC", "SC"), ("SC", "SC"), ("SC", "SC"), ("SC", "IP"), ("SC", "IP"),
                 ("SC", "IP"), ("SC", "IP"), ("SC", "IP"), ("SC", "IP"), ("SC", "IP"), ("SC", "IP"),
                 ("SC", "IP"), ("HD", "HD"), ("RL", "IP"), ("SC", "IP"), ("SC", "IP"), ("SC", "IP"),
                 ("SC", "IP"), ("SC", "SC"), ("SC", "CM")]
# what follows the order message, per event index (0 = the order)
SITE_A_EXTRA = {2: ["SIU^S12"], 3: ["SIU^S13"], 4: ["ORU^R01"], 9: ["ORU^R01"], 12: ["ORU^R01"],
                17: ["ORU^R01"], 19: ["SIU^S12"]}
SITE_B_EXTRA = {i: [t for t in types if t.startswith("ORU")] for i, types in SITE_A_EXTRA.items()}


def _config(directory: Path, database_url: str, ports: dict[str, int]) -> Path:
    demo = yaml.safe_load((ROOT / "gateway" / "demo" / "gateway.yaml").read_text(encoding="utf-8"))
    sites = []
    for site_id, port in ports.items():
        profile = directory / f"{site_id}.yaml"
        source = ROOT / "fixtures" / "profiles" / f"{site_id}.yaml"
        text = without_delivery(source.read_text(encoding="utf-8"))
        delivery = f"\ndelivery:\n  mllp: {{host: 127.0.0.1, port: {port}, read_timeout_s: 5}}\n"
        profile.write_text(text + delivery, encoding="utf-8")
        sites.append({"id": site_id, "name": site_id, "profile": str(profile)})
    config = {"database_url": database_url, "manufacturers": demo["manufacturers"], "sites": sites,
              "api_clients": demo["api_clients"]}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _post_journey(client: TestClient, site_id: str, order_id: str, coi: str, mrn: str, din: str) -> None:
    """The journey as one order: its own CoI, patient, DIN and lots (a DIN and an autologous lot
    belong to one order)."""
    order = {**JOURNEY["order"], "order_id": order_id, "site_id": site_id, "coi": coi,
             "patient": {**JOURNEY["order"]["patient"], "mrn": mrn}}
    assert client.post("/v1/orders", json=order, headers=ACME).status_code == 201
    for event in JOURNEY["events"]:
        data = dict(event["data"])
        if "din" in data:
            data["din"] = din
        if "lot" in data:
            data["lot"] = f"{data['lot']}-{order_id}"
        body = {**event, "event_id": f"{order_id}-{event['event_id']}", "coi": coi, "data": data}
        response = client.post(f"/v1/orders/{order_id}/events", json=body, headers=ACME)
        assert response.status_code == 201, response.text


def _segments(message: hl7.Message, name: str) -> list[Any]:
    return [segment for segment in message if str(segment[0]) == name]


def _check_site(peer: Peer, engine: Engine, site_id: str, *, version: str, order_type: str,
                extra: dict[int, list[str]], coi: str) -> None:
    queued = messages(engine, f"{site_id}/mllp")
    assert peer.received == [m.control_id for m in queued]  # FIFO, each exactly once
    parsed = [hl7.parse(m.payload) for m in queued]
    control_ids = [str(p.segment("MSH")[10]) for p in parsed]
    assert control_ids == peer.received and len(set(control_ids)) == len(control_ids)
    assert all(len(c) <= 20 for c in control_ids)
    assert {str(p.segment("MSH")[12]) for p in parsed} == {version}
    types = ["^".join(str(p.segment("MSH")[9]).split("^")[:2]) for p in parsed]
    expected: list[str] = []
    for index in range(len(ORDER_CONTROL)):
        expected += [order_type, *extra.get(index, [])]
    assert types == expected
    orders = [p for p, t in zip(parsed, types, strict=True) if t == order_type]
    assert [(str(p.segment("ORC")[1]), str(p.segment("ORC")[5])) for p in orders] == ORDER_CONTROL
    assert all(str(p.segment("ORC")[1]) == "RE" for p, t in zip(parsed, types, strict=True) if t == "ORU^R01")
    for message in parsed:
        orc, zcg = _segments(message, "ORC"), _segments(message, "ZCG")
        if site_id == "site-a":
            assert not zcg and all(str(o[4]).startswith(coi) for o in orc)
        else:
            assert all(str(o[4]) == "" for o in orc) and str(zcg[0][2]).startswith(coi)


def test_the_journey_reaches_each_site_engine_as_it_expects(engine: Engine, tmp_path: Path) -> None:
    peers = PeerLoop()
    try:
        site_a, site_b = Peer(peers).start(), Peer(peers).start()
        config = _config(tmp_path, engine.url.render_as_string(hide_password=False),
                         {"site-a": site_a.port, "site-b": site_b.port})
        settings = load_settings(config)
        with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
            _post_journey(client, "site-a", "Q2-A", "CHA999926123456K", "MRN-A1", "A999926123456")
            _post_journey(client, "site-b", "Q2-B", "CHA999926123457I", "MRN-B1", "A999926123457")
        stop = build_delivery_worker(settings, engine, worker_settings=FAST).run_in_thread()
        try:
            wait_until(lambda: all_finished(engine), "both journeys delivered")
        finally:
            stop()
    finally:
        peers.close()
    _check_site(site_a, engine, "site-a", version="2.5.1", order_type="OML^O21", extra=SITE_A_EXTRA,
                coi="CHA999926123456K")
    _check_site(site_b, engine, "site-b", version="2.3", order_type="ORM^O01", extra=SITE_B_EXTRA,
                coi="CHA999926123457I")
    assert len(site_a.received) == 28 and len(site_b.received) == 25
