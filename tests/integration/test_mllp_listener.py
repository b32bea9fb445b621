"""The inbound MLLP listener against real peers on 127.0.0.1: python-hl7's MLLPClient and raw sockets."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import hl7
import pytest
from hl7.client import MLLPClient

from adapters.mllp.framing import FrameReader, frame
from adapters.mllp.server import ListenerLimits, MllpListener, PeerInfo
from mappings.er7.ack import build_ack, parse_ack

AR_FRAME = b"MSH|^~\\&|CGT_GW|CGT|||20261202000000||ACK|REJ1|P|2.5.1\rMSA|AR|UNKNOWN\r"
SECRET = "DOE^JANE"  # stands for PHI: must never reach a log


def message(control_id: str, *, size: int = 0, enhanced: bool = False) -> bytes:
    pad = "X" * size
    tail = "|||AL|AL" if enhanced else ""
    return (f"MSH|^~\\&|SITE_EHR|SITE_A|CGT_GW|CGT|20261202080000||ORM^O01|{control_id}|P|2.5.1{tail}\r"
            f"PID|1||MRN1^^^SITE_A^MR||{SECRET}\rNTE|1||{pad}\r").encode()


def control_id(raw: bytes) -> str:
    return raw.split(b"\r", 1)[0].decode().split("|")[9]


class Site:
    """The handler and reject the service would pass, recording what they saw."""

    def __init__(self) -> None:
        self.received: list[tuple[str, PeerInfo]] = []
        self.rejects: list[tuple[str, bytes]] = []
        self.gate: asyncio.Event | None = None  # set: handlers wait for it
        self.in_handler = 0
        self.fail_with: Exception | None = None

    async def handle(self, raw: bytes, peer: PeerInfo) -> bytes:
        self.received.append((control_id(raw), peer))
        self.in_handler += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            return build_ack(raw.decode(), "AA").encode()
        finally:
            self.in_handler -= 1

    def reject(self, reason: str, raw_prefix: bytes) -> bytes:
        self.rejects.append((reason, raw_prefix))
        return AR_FRAME

    @property
    def ids(self) -> list[str]:
        return [cid for cid, _ in self.received]


_peers: list[Peer] = []


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def with_peers_closed() -> None:
        try:
            await asyncio.wait_for(scenario(), timeout=20)
        finally:
            for peer in _peers:
                peer.close()
                with contextlib.suppress(OSError):
                    await peer.writer.wait_closed()
            _peers.clear()

    asyncio.run(with_peers_closed())


def listener(site: Site, **limits: Any) -> MllpListener:
    options = {k: limits.pop(k) for k in ("ssl", "allowed_peers") if k in limits}
    return MllpListener(site.handle, site.reject, limits=ListenerLimits(**limits), **options)


class Peer:
    """A raw socket site engine: writes whatever bytes it is given, reads framed answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.frames = reader, writer, FrameReader()

    @classmethod
    async def connect(cls, port: int, **kw: Any) -> Peer:
        peer = cls(*await asyncio.open_connection("127.0.0.1", port, **kw))
        _peers.append(peer)
        return peer

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            while (raw := self.frames.next_message()) is None:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("listener closed the connection")
                self.frames.feed(data)
        return raw

    async def closed_by_listener(self, timeout: float = 5.0) -> bool:
        """True once the listener closes (EOF or reset) with no further answer."""
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(65536) == b""
        except ConnectionError:
            return True

    def close(self) -> None:
        self.writer.close()


def test_python_hl7_client_gets_one_aa_per_message_on_one_connection() -> None:
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

    run(scenario)


def test_split_frames_merged_frames_and_garbage_before_the_start_block() -> None:
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

    run(scenario)


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
            with pytest.raises(ConnectionError):
                for i in range(len(data)):  # a byte every 50 ms: each read is in time, the whole is not
                    await peer.write(data[i:i + 1])
                    await asyncio.sleep(0.05)
            assert await peer.closed_by_listener()
        assert site.ids == []

    run(scenario)


def test_oversized_message_is_answered_by_reject_and_the_connection_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
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
        run(scenario)
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
            with pytest.raises(ConnectionError):
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


def test_close_stops_accepting_drops_idle_connections_and_lets_in_flight_handlers_answer() -> None:
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

    run(scenario)


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


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1: with ``cryptography`` if installed, else openssl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        from cryptography import x509  # noqa: PLC0415 - optional
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import NameOID  # noqa: PLC0415
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


def test_tls_listener_serves_tls_peers_and_survives_plaintext_and_silent_ones(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
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
            assert server.refused == 2

    run(scenario)
    assert site.ids == ["TLS1", "TLS2"]
    assert all(peer.tls for _, peer in site.received)


def test_tls_listener_refuses_a_peer_outside_allowed_peers_before_the_handshake(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    client_context = ssl.create_default_context(cafile=str(cert))
    site = Site()

    async def scenario() -> None:
        async with listener(site, ssl=server_context, allowed_peers=["10.0.0.0/8"]) as server:
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await Peer.connect(server.port, ssl=client_context, server_hostname="127.0.0.1")
            assert server.refused == 1

    run(scenario)
    assert site.ids == []


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
