"""End to end over the API, the outbox and MLLP (issue 11, item 6): site-b (HL7 2.3, no MSH-18, i.e.
ASCII) receives the order of a patient named ``Zoë Núñez`` as pure ASCII bytes at a python-hl7 peer;
with ``charset_fallback: refuse`` the message is never sent, but kept as a dead letter with an alert."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp
import yaml
from sqlalchemy.engine import Engine

from gateway.bootstrap import create_app
from gateway.config import load_settings
from gateway.delivery.outbox import MessageState
from gateway.delivery.senders import build_delivery_worker
from tests.conftest import NOVA, TestClient, event_body
from tests.e2e.serving import without_delivery
from tests.integration.test_delivery_support import (
    FAST,
    ROOT,
    PeerLoop,
    alerts,
    all_finished,
    messages,
    wait_until,
)

NOVA_COI = "NC-000123"


class RawPeer:
    """A python-hl7 MLLP server that keeps the bytes of every block it receives and answers AA."""

    def __init__(self, loop: PeerLoop) -> None:
        self.loop = loop
        self.blocks: list[bytes] = []
        self.port = 0
        self._server: Any = None

    def start(self) -> RawPeer:
        self.loop.call(self._start())
        return self

    async def _start(self) -> None:
        self._server = await hl7.mllp.start_hl7_server(self._handle, "127.0.0.1", 0, encoding="ascii")
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            while True:
                try:
                    block = await reader.readblock()
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    return
                self.blocks.append(block)
                message = hl7.parse(block.decode("ascii"))  # fails on any byte outside ASCII
                control_id = str(message.segment("MSH")[10])
                writer.writemessage(message.create_ack("AA", message_id=f"ACK-{control_id}"))
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def stop(self) -> None:
        async def _stop() -> None:
            self._server.close()
            await self._server.wait_closed()

        self.loop.call(_stop())


def _config(directory: Path, engine: Engine, port: int, fallback: str) -> Path:
    demo = yaml.safe_load((ROOT / "gateway" / "demo" / "gateway.yaml").read_text(encoding="utf-8"))
    site_b = without_delivery((ROOT / "fixtures" / "profiles" / "site-b.yaml").read_text(encoding="utf-8"))
    assert "\n  charset: null\n" in site_b and "\ndelivery:" not in site_b
    site_b = site_b.replace("\n  charset: null\n", f"\n  charset: null\n  charset_fallback: {fallback}\n")
    site_b += f"\ndelivery:\n  mllp:\n    host: 127.0.0.1\n    port: {port}\n    connect_timeout_s: 1\n"
    (directory / "site-b.yaml").write_text(site_b, encoding="utf-8")
    site_a = str(ROOT / "fixtures" / "profiles" / "site-a.yaml")
    sites = [{"id": "site-a", "name": "Site A", "profile": site_a},
             {"id": "site-b", "name": "Site B", "profile": str(directory / "site-b.yaml")}]
    config = {"database_url": engine.url.render_as_string(hide_password=False), "log_level": "INFO",
              "manufacturers": demo["manufacturers"], "sites": sites, "api_clients": demo["api_clients"]}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def _zoe_order() -> dict[str, Any]:
    return {
        "order_id": "NOVA-ZOE-1", "coi": NOVA_COI, "product_code": "GT-HEM-01", "site_id": "site-b",
        "patient": {"mrn": "B-7781", "family": "Núñez", "given": ["Zoë"], "birth_date": "1992-07-30",
                    "sex": "female"},
        "ordering_provider": {"npi": "1234567893", "family": "Ibáñez", "given": ["Iñaki"]},
        "priority": "urgent", "note": "Zoë prefers Español — café au lait ½",
    }


def _run(engine: Engine, tmp_path: Path, fallback: str) -> tuple[RawPeer, list[Any]]:
    loop = PeerLoop()
    try:
        peer = RawPeer(loop).start()
        settings = load_settings(_config(tmp_path, engine, peer.port, fallback))
        with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
            response = client.post("/v1/orders", json=_zoe_order(), headers=NOVA)
            assert response.status_code == 201, response.text
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            hold = event_body("E-HOLD", "order.on_hold", now, {"reason": "Révision médicale"}, coi=NOVA_COI)
            response = client.post("/v1/orders/NOVA-ZOE-1/events", json=hold, headers=NOVA)
            assert response.status_code == 201, response.text
        worker = build_delivery_worker(settings, engine, worker_settings=FAST)
        stop = worker.run_in_thread()
        try:
            wait_until(lambda: all_finished(engine), "every message finished")
        finally:
            stop()
        peer.stop()
        return peer, messages(engine, "site-b/mllp")
    finally:
        loop.close()


def test_site_b_receives_zoe_nunez_as_pure_ascii(engine: Engine, tmp_path: Path) -> None:
    peer, rows = _run(engine, tmp_path, "transliterate")
    assert [r.state for r in rows] == [MessageState.delivered] * len(rows) and len(rows) == 2
    assert len(peer.blocks) == 2
    for block in peer.blocks:
        assert all(byte < 0x80 for byte in block), block
        message = hl7.parse(block.decode("ascii"))
        msh = message.segment("MSH")
        assert str(msh[12]) == "2.3"
        assert len(msh) <= 18 or str(msh[18]) == ""  # no MSH-18: the HL7 default, ASCII
    placed, held = (hl7.parse(b.decode("ascii")) for b in peer.blocks)
    assert placed.unescape(str(placed.segment("NTE")[3])) == "Zoe prefers Espanol - cafe au lait 1/2"
    provider = placed.segment("ORC")[12][0]
    assert (str(provider[1]), str(provider[2])) == ("Ibanez", "Inaki")
    assert str(placed.segment("PID")[5]) == "^^^^^^U"  # mrn_only: the name itself is never sent to site-b
    assert held.unescape(str(held.segment("NTE")[3])) == "Revision medicale"


def test_refuse_keeps_the_message_as_a_dead_letter_with_an_alert(engine: Engine, tmp_path: Path) -> None:
    peer, rows = _run(engine, tmp_path, "refuse")
    assert peer.blocks == []  # nothing outside ASCII could be sent, so nothing was
    assert [(r.state, r.last_outcome) for r in rows] == [(MessageState.dead, "refused")] * 2
    assert all(r.last_detail and "NTE-3" in r.last_detail and "Zo" not in r.last_detail for r in rows)
    raised = [a for a in alerts(engine) if a.destination == "site-b/mllp"]
    assert sorted(a.message_id for a in raised) == sorted(r.id for r in rows)
    assert all(a.kind == "dead-letter" and "Révision" not in a.detail for a in raised)


def test_preview_over_the_api_shows_the_transliteration_and_a_refusing_draft(client) -> None:
    from tests.conftest import SITE_B

    body = {"order": _zoe_order(), "events": []}
    response = client.post("/v1/sites/site-b/preview", json=body, headers=SITE_B)
    assert response.status_code == 200, response.text
    (placed,) = response.json()["steps"]
    (orm,) = placed["hl7v2"]
    assert orm["refused"] is None and "".join(orm["segments"]).isascii()
    assert "NTE|1|P|Zoe prefers Espanol - cafe au lait 1/2" in orm["segments"]
    transliterated = {i["path"] for i in placed["issues"] if i["code"] == "hl7v2-transliterated"}
    assert transliterated == {"hl7v2.ORC-12", "hl7v2.OBR-16", "hl7v2.NTE-3"}
    assert "Zo" not in json_text(placed["issues"])

    draft = (ROOT / "fixtures" / "profiles" / "site-b.yaml").read_text(encoding="utf-8").replace(
        "\n  charset: null\n", "\n  charset: null\n  charset_fallback: refuse\n")
    response = client.post("/v1/sites/site-b/preview", json={**body, "profile_yaml": draft}, headers=SITE_B)
    assert response.status_code == 200, response.text
    (placed,) = response.json()["steps"]
    (orm,) = placed["hl7v2"]
    assert orm["refused"] and "NTE-3" in orm["refused"]
    refused = [(i["severity"], i["path"]) for i in placed["issues"] if i["code"] == "hl7v2-charset-refused"]
    assert sorted(refused) == [("error", "hl7v2.NTE-3"), ("error", "hl7v2.OBR-16"), ("error", "hl7v2.ORC-12")]


def json_text(value: Any) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
