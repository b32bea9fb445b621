"""The MLLP sender against a raw asyncio socket peer that splits, merges and mangles ACK frames."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from adapters.mllp.client import MllpEndpoint, MllpSender
from adapters.mllp.framing import FrameReader

Respond = Callable[[int, str, asyncio.StreamWriter], Awaitable[None]]


def message(control_id: str, *, enhanced: bool = False) -> str:
    tail = "|||AL|AL" if enhanced else ""
    return (f"MSH|^~\\&|CGT_GW|CGT|SITE_EHR|SITE_B|20261121120000||ORM^O01|{control_id}|P|2.3{tail}\r"
            "PID|1||MRN9^^^SITE_B^MR\r")


def ack(control_id: str, code: str = "AA") -> bytes:
    """Written by hand, as a foreign engine would: independent of our build_ack."""
    return (f"MSH|^~\\&|SITE_EHR|SITE_B|CGT_GW|CGT|20261121120001||ACK^O01|A{control_id}|P|2.3\r"
            f"MSA|{code}|{control_id}\r").encode()


def framed(payload: bytes) -> bytes:
    return b"\x0b" + payload + b"\x1c\x0d"


class RawPeer:
    def __init__(self, respond: Respond) -> None:
        self.respond = respond
        self.received: list[tuple[int, str]] = []
        self.last_raw: bytes | None = None
        self.connections = 0
        self.server: Any = None
        self.port = 0

    async def __aenter__(self) -> RawPeer:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        frames = FrameReader()
        try:
            while data := await reader.read(65536):
                frames.feed(data)
                for raw in frames.messages():
                    control_id = raw.decode().split("\r")[0].split("|")[9]
                    self.received.append((conn, control_id))
                    self.last_raw = raw
                    await self.respond(conn, control_id, writer)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=10))


def endpoint(port: int, **kw: Any) -> MllpEndpoint:
    return MllpEndpoint("127.0.0.1", port, read_timeout_s=0.2, connect_timeout_s=0.2, **kw)


def test_ack_split_across_three_writes_including_a_split_end_block() -> None:
    async def respond(conn: int, control_id: str, writer: asyncio.StreamWriter) -> None:
        data = framed(ack(control_id))
        for piece in (data[:7], data[7:-1], data[-1:]):  # the 2nd piece ends with 0x1C alone
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        async with RawPeer(respond) as peer, MllpSender(endpoint(peer.port)) as sender:
            outcomes = [await sender.send(message(f"S{i}")) for i in range(3)]
        assert [o.status for o in outcomes] == ["delivered"] * 3
        assert peer.received == [(1, "S0"), (1, "S1"), (1, "S2")]
    run(scenario)


def test_commit_and_application_ack_in_one_tcp_segment() -> None:
    async def respond(conn: int, control_id: str, writer: asyncio.StreamWriter) -> None:
        writer.write(framed(ack(control_id, "CA")) + framed(ack(control_id, "AA")))  # one segment
        await writer.drain()

    async def scenario() -> None:
        async with RawPeer(respond) as peer, \
                MllpSender(endpoint(peer.port, wait_for_application_ack=True)) as sender:
            first = await sender.send(message("E1", enhanced=True))
            second = await sender.send(message("E2", enhanced=True))
        assert (first.status, first.ack_code) == ("delivered", "AA")
        assert (second.status, second.ack_code) == ("delivered", "AA")
        assert sender.connections_opened == 1
    run(scenario)


def test_a_stray_second_ack_in_the_same_segment_is_never_taken_for_the_next_message() -> None:
    async def respond(conn: int, control_id: str, writer: asyncio.StreamWriter) -> None:
        extra = framed(ack(control_id)) if control_id == "D1" else b""  # a duplicate ACK for D1
        writer.write(framed(ack(control_id)) + extra)
        await writer.drain()

    async def scenario() -> None:
        async with RawPeer(respond) as peer, MllpSender(endpoint(peer.port)) as sender:
            first = await sender.send(message("D1"))
            second = await sender.send(message("D2"))
        assert first.delivered and second.delivered and second.warning is None
        assert peer.received == [(1, "D1"), (2, "D2")]  # the sender started clean for D2
    run(scenario)


def test_garbage_before_the_start_block_is_ignored() -> None:
    async def respond(conn: int, control_id: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\r\n\x00noise" + framed(ack(control_id)))
        await writer.drain()

    async def scenario() -> None:
        async with RawPeer(respond) as peer, MllpSender(endpoint(peer.port)) as sender:
            outcome = await sender.send(message("G1"))
        assert outcome.delivered
    run(scenario)


def test_zero_length_answer_is_not_an_ack() -> None:
    async def respond(conn: int, control_id: str, writer: asyncio.StreamWriter) -> None:
        writer.write(framed(b"") if conn == 1 else framed(ack(control_id)))
        await writer.drain()

    async def scenario() -> None:
        async with RawPeer(respond) as peer, MllpSender(endpoint(peer.port)) as sender:
            empty = await sender.send(message("Z1"))
            again = await sender.send(message("Z1"))
        assert empty.status == "retry" and empty.warning is not None and "no usable ACK" in empty.warning
        assert again.delivered
        assert peer.received == [(1, "Z1"), (2, "Z1")]
    run(scenario)


def test_oversized_answer_is_refused_with_bounded_memory() -> None:
    async def respond(conn: int, control_id: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x0b" + b"x" * 100_000)  # never ends
        await writer.drain()

    async def scenario() -> None:
        async with RawPeer(respond) as peer, \
                MllpSender(endpoint(peer.port, max_message_size=1024)) as sender:
            outcome = await sender.send(message("O1"))
        assert outcome.status == "retry" and outcome.detail is not None and "exceeds 1024" in outcome.detail
        assert not sender.connected
    run(scenario)


def test_end_block_without_carriage_return_drops_the_connection() -> None:
    async def respond(conn: int, control_id: str, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x0b" + ack(control_id) + (b"\x1cX" if conn == 1 else b"\x1c\x0d"))
        await writer.drain()

    async def scenario() -> None:
        async with RawPeer(respond) as peer, MllpSender(endpoint(peer.port)) as sender:
            broken = await sender.send(message("F1"))
            fixed = await sender.send(message("F1"))
        assert broken.status == "retry" and broken.warning is not None and "framing" in broken.warning
        assert fixed.delivered
    run(scenario)


def raw_is_ack(control_id: str) -> bool:
    return not control_id.startswith("E")


def test_application_ack_asking_for_a_commit_ack_gets_one() -> None:
    async def respond(conn: int, control_id: str, writer: asyncio.StreamWriter) -> None:
        if raw_is_ack(control_id):  # our commit ACK for the application ACK: nothing to answer
            return
        app_ack = (f"MSH|^~\\&|SITE_EHR|SITE_B|CGT_GW|CGT|20261121120002||ACK^O01^ACK|APP{control_id}|P|2.4"
                   f"|||AL|NE\rMSA|AA|{control_id}\r").encode()
        writer.write(framed(ack(control_id, "CA")) + framed(app_ack))
        await writer.drain()

    async def scenario() -> None:
        async with RawPeer(respond) as peer, \
                MllpSender(endpoint(peer.port, wait_for_application_ack=True)) as sender:
            outcome = await sender.send(message("E7", enhanced=True))
            for _ in range(50):  # the peer reads our commit ACK
                if peer.received[1:]:
                    break
                await asyncio.sleep(0.01)
        assert (outcome.status, outcome.ack_code) == ("delivered", "AA")
        assert len(peer.received) == 2 and peer.received[0] == (1, "E7")
        assert peer.last_raw is not None
        assert b"MSA|CA|APPE7\r" in peer.last_raw
    run(scenario)
