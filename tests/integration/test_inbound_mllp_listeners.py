"""The site listeners' set-up around the service: TLS, allowed peers, start-up errors, a failing service."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl

import pytest
from sqlalchemy.exc import OperationalError

from adapters.mllp.framing import FrameReader
from gateway.inbound import requests
from gateway.inbound.mllp import InboundListeners, ListenerStartError
from tests.conftest import ACME, order_body
from tests.integration.test_inbound_mllp_support import (
    Site,
    ack_code,
    listening,
    message,
    on_port_zero,
    segments,
)
from tests.integration.test_mllp_listener_support import self_signed
from tests.unit.inbound_cases import validate_strict


@pytest.fixture
def context(client):
    return client.app.state.context


def test_a_failing_service_is_answered_cr_and_the_resend_is_processed(client, context, monkeypatch):
    assert client.post("/v1/orders", json=order_body("ORD-L1"), headers=ACME).status_code == 201
    real = requests.receive
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("SELECT", {}, Exception("database is down"))
        return real(*args, **kwargs)

    monkeypatch.setattr(requests, "receive", flaky)
    hold = message("oml-o21-hold", "ORD-L1", "FLAKY-1")
    with listening(context) as port:
        with Site(port) as site:
            [answer] = site.send(hold, answers=1)
            validate_strict(answer)
            assert ack_code(answer) == "CR" and segments(answer)["MSA"][0][2] == "FLAKY-1"
            assert "send it again later" in answer
            assert site.closed()
        with Site(port) as site:  # the engine resends on a new connection
            assert [ack_code(a) for a in site.send(hold)] == ["CA", "AA"]
    assert client.get("/v1/orders/ORD-L1", headers=ACME).json()["status"] == "on_hold"


def test_a_peer_outside_allowed_peers_is_closed_before_a_byte_is_read(context):
    with listening(context, allowed_peers=("10.0.0.0/8",)) as port, Site(port, timeout=5) as site:
        site.client.socket.sendall(b"\x0b" + message("oml-o21-hold", "ORD-L2", "P-1").encode() + b"\x1c\r")
        with pytest.raises((ConnectionError, OSError)):
            site.send_raw(b"", answers=1)


def test_a_tls_listener(client, context, tmp_path):
    assert client.post("/v1/orders", json=order_body("ORD-L3"), headers=ACME).status_code == 201
    cert, key = self_signed(tmp_path)
    tls = ssl.create_default_context(cafile=str(cert))
    with listening(context, tls=True, tls_cert_file=str(cert), tls_key_file=str(key)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                tls.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            conn.sendall(b"\x0b" + message("oml-o21-hold", "ORD-L3", "TLS-1").encode() + b"\x1c\r")
            frames = FrameReader(1 << 20)
            acks: list[str] = []
            while len(acks) < 2:
                found = frames.next_message()
                if found is None:
                    frames.feed(conn.recv(65536))
                else:
                    acks.append(found.decode())
    assert [ack_code(a) for a in acks] == ["CA", "AA"]


def test_start_up_errors_name_the_site_and_address(context, tmp_path):
    missing = on_port_zero(context, tls=True, tls_cert_file=str(tmp_path / "no-cert.pem"),
                           tls_key_file=str(tmp_path / "no-key.pem"))
    named = r"site 'site-a': cannot listen for HL7v2 \(MLLP\) on 127\.0\.0\.1:0"
    with pytest.raises(ListenerStartError, match=named):
        asyncio.run(InboundListeners(missing).start())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = on_port_zero(context)
        profile = busy.profiles["site-a"]
        mllp = profile.inbound.mllp.model_copy(update={"port": taken.getsockname()[1]})
        busy.profiles["site-a"] = profile.model_copy(update={"inbound": profile.inbound.model_copy(
            update={"mllp": mllp})})
        with pytest.raises(ListenerStartError, match=f"127.0.0.1:{mllp.port}: "):
            asyncio.run(InboundListeners(busy).start())


def test_listeners_can_be_switched_off(context):
    assert [s.site_id for s in InboundListeners(context).sites] == ["site-a"]  # the demo: site-a only
    off = dataclasses.replace(context, settings=context.settings.model_copy(
        update={"inbound_mllp_enabled": False}))
    assert InboundListeners(off).sites == []
    disabled = on_port_zero(context, enabled=False)
    assert InboundListeners(disabled).sites == []
