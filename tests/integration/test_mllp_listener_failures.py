"""The MLLP listener when things go wrong: oversized messages, failing handlers and rejects, odd answers."""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

import pytest

from adapters.mllp.framing import frame
from adapters.mllp.server import ListenerLimits, MllpListener, PeerInfo
from mappings.er7.ack import build_ack, parse_ack
from tests.integration.test_mllp_listener_support import (
    AR_FRAME,
    LOOPS,
    SECRET,
    Peer,
    Site,
    control_id,
    listener,
    message,
    run,
)


@LOOPS
def test_oversized_message_is_answered_by_reject_and_the_connection_goes_on(
        caplog: pytest.LogCaptureFixture, loop: str) -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site, max_message_bytes=2000) as server:
            big = await Peer.connect(server.port)
            data = frame(message("BIG", size=50_000))
            await big.write(data[:20_000])  # well past the limit, its end not sent yet
            other = await Peer.connect(server.port)  # meanwhile, another site is served
            await other.write(frame(message("O1")))
            assert parse_ack(await other.answer()).control_id == "O1"
            await big.write(data[20_000:] + frame(message("N1")))
            assert await big.answer() == AR_FRAME  # the answer follows the whole oversized message
            assert parse_ack(await big.answer()).control_id == "N1"  # same connection, still usable
            big.close()
            other.close()
            assert server.rejected == 1

    with caplog.at_level(logging.DEBUG, logger="adapters.mllp"):
        run(scenario, loop)
    assert site.ids == ["O1", "N1"]  # the oversized message never reached the handler
    [(reason, prefix)] = site.rejects
    assert reason == "message too large" and prefix.startswith(b"MSH|^~\\&|SITE_EHR|SITE_A|")
    assert len(prefix) <= 1024
    assert SECRET not in caplog.text


def test_endless_oversized_message_is_cut_off_by_the_message_deadline() -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site, max_message_bytes=1000, message_timeout_s=0.3) as server:
            peer = await Peer.connect(server.port)
            with pytest.raises((ConnectionError, RuntimeError)):
                for _ in range(400):  # 40 MB would follow; the listener drops it as it comes, then closes
                    await peer.write(b"\x0b" + b"y" * 100_000)
                    await asyncio.sleep(0.01)
            assert await peer.closed_by_listener()
        assert site.ids == []

    run(scenario)


def test_handler_failure_answers_internal_error_closes_and_keeps_serving(
        caplog: pytest.LogCaptureFixture) -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site) as server:
            site.fail_with = RuntimeError(f"database said no about {SECRET}")
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("F1")) + frame(message("F2")))
            assert await peer.answer() == AR_FRAME
            assert await peer.closed_by_listener()  # F2 is not handled: the site resends it
            site.fail_with = None
            fresh = await Peer.connect(server.port)
            await fresh.write(frame(message("F2")))
            assert parse_ack(await fresh.answer()).control_id == "F2"
            fresh.close()

    with caplog.at_level(logging.DEBUG, logger="adapters.mllp"):
        run(scenario)
    assert site.ids == ["F1", "F2"]
    assert site.rejects[0][0] == "internal error" and site.rejects[0][1].startswith(b"MSH|")
    assert SECRET not in caplog.text and "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    assert any("RuntimeError" in r.getMessage() for r in caplog.records)


def test_handler_answer_that_cannot_be_framed_is_an_internal_error() -> None:
    site = Site()

    async def bad(raw: bytes, peer: PeerInfo) -> bytes:
        return b"MSH|\x1c|oops"

    async def scenario() -> None:
        async with MllpListener(bad, site.reject) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("X1")))
            assert await peer.answer() == AR_FRAME
            assert await peer.closed_by_listener()

    run(scenario)
    assert site.rejects[0][0] == "internal error"


def test_several_answers_are_written_one_frame_each_and_an_empty_answer_sends_nothing() -> None:
    async def enhanced(raw: bytes, peer: PeerInfo) -> list[bytes]:
        if control_id(raw) == "QUIET":
            return []
        return [build_ack(raw.decode(), "CA").encode(), build_ack(raw.decode(), "AA").encode(), b""]

    async def scenario() -> None:
        async with MllpListener(enhanced, Site().reject) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("QUIET")) + frame(message("E1", enhanced=True)))
            answers = [parse_ack(await peer.answer()) for _ in range(2)]
            assert [(a.code, a.control_id) for a in answers] == [("CA", "E1"), ("AA", "E1")]
            peer.close()

    run(scenario)


def test_answers_go_out_with_tcp_nodelay() -> None:
    seen: list[int] = []
    server: MllpListener

    async def handle(raw: bytes, peer: PeerInfo) -> bytes:
        writer = server._connections[peer.connection_id].writer
        seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        return build_ack(raw.decode(), "AA").encode()

    async def scenario() -> None:
        nonlocal server
        async with MllpListener(handle, Site().reject) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("N1")))
            await peer.answer()
            peer.close()

    run(scenario)
    assert seen and seen[0] != 0


def test_two_oversized_messages_in_one_write_get_one_answer_each_in_order() -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site, max_message_bytes=500) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("BIG1", size=900)) + frame(message("BIG2", size=900))
                             + frame(message("OK1")))
            assert [await peer.answer() for _ in range(2)] == [AR_FRAME, AR_FRAME]
            assert parse_ack(await peer.answer()).control_id == "OK1"

    run(scenario)
    assert [control_id(prefix) for _, prefix in site.rejects] == ["BIG1", "BIG2"]
    assert site.ids == ["OK1"]


def test_a_failing_reject_sends_nothing_but_the_listener_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    site = Site()

    def broken_reject(reason: str, raw_prefix: bytes) -> bytes:
        raise ValueError(f"cannot build an AR for {raw_prefix!r}")

    async def failing(raw: bytes, peer: PeerInfo) -> bytes:
        raise KeyError(SECRET)

    async def scenario() -> None:
        limits = ListenerLimits(max_message_bytes=300)
        async with MllpListener(site.handle, broken_reject, limits=limits) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("BIG", size=400)) + frame(message("OK1")))
            assert parse_ack(await peer.answer()).control_id == "OK1"  # no answer for BIG, OK1 still served
        async with MllpListener(failing, broken_reject) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("F1")))
            assert await peer.closed_by_listener()

    with caplog.at_level(logging.DEBUG, logger="adapters.mllp"):
        run(scenario)
    assert site.ids == ["OK1"]
    assert SECRET not in caplog.text and "MSH" not in caplog.text


def test_a_handler_returning_text_instead_of_bytes_is_an_internal_error() -> None:
    site = Site()

    async def wrong_type(raw: bytes, peer: PeerInfo) -> Any:
        return raw.decode()

    async def scenario() -> None:
        async with MllpListener(wrong_type, site.reject) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("W1")))
            assert await peer.answer() == AR_FRAME
            assert await peer.closed_by_listener()

    run(scenario)
    assert [reason for reason, _ in site.rejects] == ["internal error"]
