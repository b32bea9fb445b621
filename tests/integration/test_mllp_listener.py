"""The inbound MLLP listener against real peers on 127.0.0.1: framing, order, concurrency, limits."""

from __future__ import annotations

import asyncio
import logging
import random

import hl7
import pytest
from hl7.client import MLLPClient

from adapters.mllp.framing import frame
from mappings.er7.ack import parse_ack
from tests.integration.test_mllp_listener_support import (
    LOOPS,
    SECRET,
    Peer,
    Site,
    listener,
    message,
    run,
)


@LOOPS
def test_python_hl7_client_gets_one_aa_per_message_on_one_connection(loop: str) -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site) as server:
            def send_three() -> list[bytes]:
                with MLLPClient("127.0.0.1", server.port) as client:
                    return [client.send_message(message(f"M{i}")) for i in range(3)]
            answers = await asyncio.to_thread(send_three)
        for i, raw in enumerate(answers):
            assert raw.startswith(b"\x0b") and raw.endswith(b"\x1c\r")  # one whole frame per recv
            ack = hl7.parse(raw[1:-2].decode())
            assert str(ack.segment("MSA")[1]) == "AA" and str(ack.segment("MSA")[2]) == f"M{i}"
        assert site.ids == ["M0", "M1", "M2"]
        assert len({peer.connection_id for _, peer in site.received}) == 1
        assert site.received[0][1].host == "127.0.0.1" and not site.received[0][1].tls

    run(scenario, loop)


@LOOPS
def test_split_frames_merged_frames_and_garbage_before_the_start_block(loop: str) -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site) as server:
            peer = await Peer.connect(server.port)
            data = frame(message("S1"))
            for piece in (data[:5], data[5:40], data[40:-1], data[-1:]):  # end block split from its CR
                await peer.write(piece)
                await asyncio.sleep(0.01)
            assert parse_ack(await peer.answer()).control_id == "S1"
            await peer.write(b"\r\nnoise\x00" + frame(message("S2")) + b"junk" + frame(message("S3")))
            assert [parse_ack(await peer.answer()).control_id for _ in range(2)] == ["S2", "S3"]
            peer.close()
        assert site.ids == ["S1", "S2", "S3"]

    run(scenario, loop)


@pytest.mark.parametrize("seed", range(5))
def test_any_chunking_of_a_stream_delivers_every_message_once_in_order(seed: int) -> None:
    site = Site()
    rng = random.Random(seed)
    ids = [f"R{seed}-{i}" for i in range(8)]
    stream = b"".join(rng.choice([b"", b"garbage", b"\r\n"])
                      + frame(message(cid, size=rng.randrange(0, 3000))) for cid in ids)

    async def scenario() -> None:
        async with listener(site) as server:
            peer = await Peer.connect(server.port)
            at = 0
            while at < len(stream):
                step = rng.choice([1, 2, 7, 100, 4096])
                await peer.write(stream[at:at + step])
                at += step
            assert [parse_ack(await peer.answer()).control_id for _ in ids] == ids
            peer.close()
        assert site.ids == ids

    run(scenario)


def test_one_connection_is_served_in_order_while_another_is_served_concurrently() -> None:
    site = Site()

    async def scenario() -> None:
        site.gate = asyncio.Event()
        async with listener(site) as server:
            slow = await Peer.connect(server.port)
            await slow.write(frame(message("A1")) + frame(message("A2")))  # both in one write
            while site.ids != ["A1"]:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            assert site.ids == ["A1"]  # A2 is not handed over until A1 is answered
            with pytest.raises(TimeoutError):  # and nothing is answered before the handler returns
                await slow.answer(timeout=0.1)
            other = await Peer.connect(server.port)
            await other.write(frame(message("B1")))
            while "B1" not in site.ids:
                await asyncio.sleep(0.01)
            assert site.in_handler == 2  # B1's handler runs while A1's waits
            site.gate.set()
            assert parse_ack(await other.answer()).control_id == "B1"
            assert [parse_ack(await slow.answer()).control_id for _ in range(2)] == ["A1", "A2"]
            slow.close()
            other.close()
        assert site.ids.index("A2") > site.ids.index("B1")

    run(scenario)


def test_max_connections_closes_the_extra_one_at_accept() -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site, max_connections=1) as server:
            first = await Peer.connect(server.port)
            await first.write(frame(message("C1")))
            await first.answer()
            extra = await Peer.connect(server.port)
            assert await extra.closed_by_listener()
            await first.write(frame(message("C2")))
            assert parse_ack(await first.answer()).control_id == "C2"
            first.close()
            while server.active_connections:
                await asyncio.sleep(0.01)
            again = await Peer.connect(server.port)
            await again.write(frame(message("C3")))
            assert parse_ack(await again.answer()).control_id == "C3"
            again.close()
            assert server.refused == 1
        assert site.ids == ["C1", "C2", "C3"]

    run(scenario)


def test_peer_not_in_allowed_peers_is_closed_at_accept_and_logged_without_phi(
        caplog: pytest.LogCaptureFixture) -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site, allowed_peers=["10.0.0.0/8", "192.168.1.7"]) as server:
            peer = await Peer.connect(server.port)
            with pytest.raises((ConnectionError, OSError)):  # noqa: PT012 - the write may pass or fail
                await peer.write(frame(message("P1")))
                assert await peer.closed_by_listener()
                raise ConnectionError("closed as expected")
            assert server.refused == 1
        async with listener(site, allowed_peers=["127.0.0.0/8"]) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("P2")))
            assert parse_ack(await peer.answer()).control_id == "P2"
            peer.close()

    with caplog.at_level(logging.DEBUG, logger="adapters.mllp"):
        run(scenario)
    assert site.ids == ["P2"]
    assert any("not in allowed_peers" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text and "P1" not in caplog.text


def test_idle_and_stalled_connections_are_closed_at_the_read_deadline() -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site, read_timeout_s=0.2) as server:
            idle = await Peer.connect(server.port)
            stalled = await Peer.connect(server.port)
            await stalled.write(frame(message("T1"))[:30])  # half a message, then nothing
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert await idle.closed_by_listener() and await stalled.closed_by_listener()
            assert loop.time() - started < 5  # generous: the deadline is 0.2 s
            fresh = await Peer.connect(server.port)  # the listener itself goes on
            await fresh.write(frame(message("T2")))
            assert parse_ack(await fresh.answer()).control_id == "T2"
            fresh.close()
        assert site.ids == ["T2"]

    run(scenario)


def test_a_message_dripped_slower_than_the_message_deadline_is_cut_off() -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site, read_timeout_s=1.0, message_timeout_s=0.3) as server:
            peer = await Peer.connect(server.port)
            data = frame(message("D1"))
            with pytest.raises((ConnectionError, RuntimeError)):  # RuntimeError: uvloop's closed transport
                for i in range(len(data)):  # a byte every 50 ms: each read is in time, the whole is not
                    await peer.write(data[i:i + 1])
                    await asyncio.sleep(0.05)
            assert await peer.closed_by_listener()
        assert site.ids == []

    run(scenario)


def test_broken_framing_closes_the_connection_and_others_are_served() -> None:
    site = Site()

    async def scenario() -> None:
        async with listener(site) as server:
            peer = await Peer.connect(server.port)
            await peer.write(frame(message("OK1")))
            assert parse_ack(await peer.answer()).control_id == "OK1"
            await peer.write(b"\x0b" + message("BAD") + b"\x1cX")  # end block without its CR
            assert await peer.closed_by_listener()
            fresh = await Peer.connect(server.port)
            await fresh.write(frame(message("OK2")))
            assert parse_ack(await fresh.answer()).control_id == "OK2"

    run(scenario)
    assert site.ids == ["OK1", "OK2"]


def test_many_python_hl7_clients_at_once_each_get_their_own_acks_in_order() -> None:
    site = Site()
    clients, per_client = 8, 25

    async def scenario() -> None:
        async with listener(site, max_connections=clients) as server:
            def one_client(n: int) -> list[str]:
                with MLLPClient("127.0.0.1", server.port) as client:
                    return [parse_ack(client.send_message(message(f"L{n}-{i}"))[1:-2]).control_id
                            for i in range(per_client)]
            loop = asyncio.get_running_loop()
            started = loop.time()
            results = await asyncio.gather(*(asyncio.to_thread(one_client, n) for n in range(clients)))
            elapsed = loop.time() - started
            assert server.refused == 0
        for n, ids in enumerate(results):
            assert ids == [f"L{n}-{i}" for i in range(per_client)]
        assert elapsed < 15  # generous: 200 round trips on loopback take well under a second
        for n in range(clients):  # each connection's messages reached the handler in order
            assert [c for c in site.ids if c.startswith(f"L{n}-")] == [f"L{n}-{i}" for i in range(per_client)]

    run(scenario)
