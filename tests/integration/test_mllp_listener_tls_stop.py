"""The MLLP listener over TLS, and stopping it gracefully."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from adapters.mllp.framing import frame
from adapters.mllp.server import ListenerLimits, MllpListener
from mappings.er7.ack import parse_ack
from tests.integration.test_mllp_listener_support import (
    LOOPS,
    Peer,
    Site,
    listener,
    message,
    run,
    self_signed,
)


@LOOPS
def test_close_stops_accepting_drops_idle_connections_and_lets_in_flight_handlers_answer(loop: str) -> None:
    site = Site()

    async def scenario() -> None:
        site.gate = asyncio.Event()
        server = listener(site, stop_timeout_s=10)
        await server.start()
        port = server.port
        busy = await Peer.connect(port)
        idle = await Peer.connect(port)
        await busy.write(frame(message("G1")))
        while site.ids != ["G1"]:
            await asyncio.sleep(0.01)
        closing = asyncio.create_task(server.close())
        assert await idle.closed_by_listener()
        with pytest.raises(OSError):
            await Peer.connect(port)
        assert not closing.done()
        site.gate.set()  # the in-flight handler finishes: its ACK goes out, then the connection closes
        assert parse_ack(await busy.answer()).control_id == "G1"
        assert await busy.closed_by_listener()
        await closing

    run(scenario, loop)


def test_close_cancels_handlers_that_outlive_the_stop_deadline() -> None:
    site = Site()

    async def scenario() -> None:
        site.gate = asyncio.Event()  # never set
        server = listener(site, stop_timeout_s=0.2)
        await server.start()
        peer = await Peer.connect(server.port)
        await peer.write(frame(message("H1")))
        while site.ids != ["H1"]:
            await asyncio.sleep(0.01)
        async with asyncio.timeout(5):
            await server.close()
        assert site.in_handler == 0
        assert await peer.closed_by_listener()

    run(scenario)


def test_bad_limits_and_allowed_peers_are_refused_at_construction() -> None:
    site = Site()
    with pytest.raises(ValueError, match="not-an-ip"):
        MllpListener(site.handle, site.reject, allowed_peers=["not-an-ip"])
    for bad in ({"max_message_bytes": 0}, {"max_connections": 0}, {"read_timeout_s": 0},
                {"message_timeout_s": float("nan")}, {"stop_timeout_s": -1}):
        with pytest.raises(ValueError):
            ListenerLimits(**bad)


@LOOPS
def test_tls_listener_serves_tls_peers_and_survives_plaintext_and_silent_ones(
        tmp_path: Path, loop: str) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    site = Site()

    async def scenario() -> None:
        async with listener(site, ssl=server_context, tls_handshake_timeout_s=0.3) as server:
            plain = await Peer.connect(server.port)  # speaks MLLP without TLS
            await plain.write(frame(message("PLAIN")))
            assert await plain.closed_by_listener()
            silent = await Peer.connect(server.port)  # never starts the handshake
            assert await silent.closed_by_listener()
            secure = await Peer.connect(server.port, ssl=client_context, server_hostname="127.0.0.1")
            await secure.write(frame(message("TLS1")) + frame(message("TLS2")))
            assert [parse_ack(await secure.answer()).control_id for _ in range(2)] == ["TLS1", "TLS2"]
            assert server.accepted == 1

    run(scenario, loop)
    assert site.ids == ["TLS1", "TLS2"]
    assert all(peer.tls for _, peer in site.received)


def test_tls_listener_refuses_a_peer_outside_allowed_peers(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    site = Site()

    async def scenario() -> None:
        async with listener(site, ssl=server_context, allowed_peers=["10.0.0.0/8"]) as server:
            try:  # the handshake may complete before the listener sees the peer, or fail as it closes
                peer = await Peer.connect(server.port, ssl=client_context, server_hostname="127.0.0.1")
            except OSError:
                pass
            else:
                assert await peer.closed_by_listener()
            while server.refused == 0:
                await asyncio.sleep(0.01)
            assert server.accepted == 0

    run(scenario)
    assert site.ids == []
