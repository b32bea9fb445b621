"""The MLLP sender against a REAL peer: python-hl7's asyncio MLLP server on loopback, misbehaving
on demand."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp
import pytest

from adapters.delivery_result import DeliveryOutcome
from adapters.mllp.client import MllpEndpoint, MllpSender
from adapters.retry import RetryPolicy

FAST = RetryPolicy(initial_s=0.01, max_delay_s=0.05, jitter_s=0.0)


def message(control_id: str, *, enhanced: bool = False, note: str = "Zoë O'Brien-Łukasz") -> str:
    tail = "|||AL|AL" if enhanced else ""
    return ("MSH|^~\\&|CGT_GW|CGT|SITE_EHR|SITE_A|20261121120000||OML^O21^OML_O21|"
            f"{control_id}|P|2.5.1{tail}\r"
            f"PID|1||MRN1^^^SITE_A^MR||{note}\r")


@dataclass
class Peer:
    """A site engine that answers each message by the next behaviour in ``script`` (then ``default``).

    Behaviours: an ACK code (``AA``, ``AR``, ``AE``, ``CA``...), ``CA+AA``/``CA+AE`` (commit ACK, then
    the application ACK a moment later), ``AA+close``, ``wrong-id``, ``silent``, ``close``,
    ``late`` (AA after ``late_s``).
    """

    script: list[str] = field(default_factory=list)
    default: str = "AA"
    late_s: float = 0.4
    received: list[tuple[int, str]] = field(default_factory=list)  # (connection number, MSH-10)
    raw: list[str] = field(default_factory=list)
    connections: int = 0
    server: Any = None
    port: int = 0

    async def start(self, port: int = 0) -> Peer:
        self.server = await hl7.mllp.start_hl7_server(self._handle, "127.0.0.1", port, encoding="utf-8")
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                try:
                    msg = await reader.readmessage()
                except asyncio.IncompleteReadError:
                    return
                control_id = str(msg.segment("MSH")[10])
                self.received.append((conn, control_id))
                self.raw.append(str(msg))
                behaviour = self.script.pop(0) if self.script else self.default
                if behaviour == "silent":
                    continue
                if behaviour == "close":
                    writer.close()
                    return
                if behaviour == "late":
                    await asyncio.sleep(self.late_s)
                    behaviour = "AA"
                if behaviour == "AA+close":  # an engine that hangs up after each answer
                    writer.writemessage(msg.create_ack("AA", message_id="P1"))
                    await writer.drain()
                    writer.close()
                    return
                if behaviour == "wrong-id":
                    writer.writemessage(_ack_text(msg, "AA", msa2="SOMEONE-ELSE"))
                elif behaviour.startswith("CA+"):
                    writer.writemessage(_ack_text(msg, "CA"))
                    await writer.drain()
                    await asyncio.sleep(0.02)
                    writer.writemessage(_ack_text(msg, behaviour[3:], text="Order filed"
                                                  if behaviour.endswith("AA") else "No such product"))
                elif behaviour == "AE":
                    writer.writemessage(_ack_text(msg, "AE", text="Unknown product CART-XX"))
                else:
                    writer.writemessage(msg.create_ack(behaviour, message_id="P1"))
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            writer.close()


def _ack_text(msg: hl7.Message, code: str, *, msa2: str | None = None,
              text: str | None = None) -> hl7.Message:
    """An ACK as a foreign engine writes it (python-hl7's create_ack, then MSA-2/MSA-3/ERR edited)."""
    ack = str(msg.create_ack(code, message_id="P2"))
    control_id = str(msg.segment("MSH")[10])
    ack = ack.replace(f"MSA|{code}|{control_id}", f"MSA|{code}|{msa2 or control_id}")
    if text:
        ack += f"|{text}\rERR|||207^Application internal error^HL70357|E||||{text}"
    return hl7.parse(ack)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=10))


def endpoint(port: int, **kw: Any) -> MllpEndpoint:
    # Generous by default: a loaded CI machine must not turn a prompt ACK into a timeout. The tests
    # about deadlines set their own short ones.
    kw.setdefault("read_timeout_s", 2.0)
    kw.setdefault("connect_timeout_s", 2.0)
    return MllpEndpoint("127.0.0.1", port, **kw)


def test_normal_delivery_in_order_over_one_persistent_connection() -> None:
    async def scenario() -> None:
        peer = await Peer().start()
        async with MllpSender(endpoint(peer.port)) as sender:
            outcomes = [await sender.send(message(f"C{i}")) for i in range(5)]
        await peer.stop()
        assert [o.status for o in outcomes] == ["delivered"] * 5
        assert all(o.ack_code == "AA" and o.latency_ms is not None for o in outcomes)
        assert peer.received == [(1, f"C{i}") for i in range(5)]
        assert sender.connections_opened == 1
        assert "Zoë O'Brien-Łukasz" in peer.raw[0]  # UTF-8 end to end
    run(scenario)


def test_ar_then_aa_is_retried_with_the_same_message_then_delivered_once() -> None:
    async def scenario() -> None:
        peer = await Peer(script=["AR"]).start()
        attempts: list[tuple[int, DeliveryOutcome]] = []
        async with MllpSender(endpoint(peer.port)) as sender:
            outcome = await FAST.run(lambda: sender.send(message("C1")),
                                     on_attempt=lambda n, o: attempts.append((n, o)))
        await peer.stop()
        assert outcome.status == "delivered" and outcome.ack_code == "AA"
        assert [(n, o.status, o.ack_code) for n, o in attempts] == [
            (1, "retry", "AR"), (2, "delivered", "AA")]
        assert [c for _, c in peer.received] == ["C1", "C1"]
        assert peer.raw[0] == peer.raw[1]
    run(scenario)


def test_ae_is_dead_lettered_with_the_ack_text_and_the_queue_continues() -> None:
    async def scenario() -> None:
        peer = await Peer(script=["AE"]).start()
        async with MllpSender(endpoint(peer.port)) as sender:
            first = await FAST.run(lambda: sender.send(message("C1")))
            second = await sender.send(message("C2"))
        await peer.stop()
        assert first.status == "dead" and first.ack_code == "AE"
        assert first.detail is not None and "Unknown product CART-XX" in first.detail
        assert second.status == "delivered"
        assert peer.received == [(1, "C1"), (1, "C2")]  # sent once, same connection kept
    run(scenario)


def test_wrong_msa2_is_never_delivered_warns_and_drops_the_connection() -> None:
    async def scenario() -> None:
        peer = await Peer(script=["wrong-id"]).start()
        async with MllpSender(endpoint(peer.port)) as sender:
            bad = await sender.send(message("C1"))
            assert not sender.connected
            good = await sender.send(message("C1"))
        await peer.stop()
        assert bad.status == "retry" and bad.ack_code == "AA"
        assert bad.warning is not None and "SOMEONE-ELSE" in bad.warning
        assert good.status == "delivered" and good.warning is None
        assert peer.received == [(1, "C1"), (2, "C1")]
    run(scenario)


def test_silent_peer_read_deadline_fires_and_retries_do_not_storm() -> None:
    async def scenario() -> None:
        peer = await Peer(default="silent").start()
        policy = RetryPolicy(initial_s=0.05, max_delay_s=0.1, jitter_s=0.0, max_attempts=3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with MllpSender(endpoint(peer.port, read_timeout_s=0.2)) as sender:
            outcome = await policy.run(lambda: sender.send(message("C1")))
        elapsed = loop.time() - started
        await peer.stop()
        assert outcome.status == "retry" and outcome.detail is not None and "read deadline" in outcome.detail
        # exactly one copy per attempt, each on a fresh connection, same control id
        assert peer.received == [(1, "C1"), (2, "C1"), (3, "C1")]
        assert elapsed >= 3 * 0.2 + 0.05 + 0.1
    run(scenario)


def test_late_ack_is_never_taken_for_the_next_message() -> None:
    async def scenario() -> None:
        peer = await Peer(script=["late"], late_s=0.6).start()
        async with MllpSender(endpoint(peer.port, read_timeout_s=0.3)) as sender:
            timed_out = await sender.send(message("C1"))
            await asyncio.sleep(0.4)  # the late ACK for C1 is written now, on the dropped connection
            resent = await sender.send(message("C1"))
            nxt = await sender.send(message("C2"))
        await peer.stop()
        assert timed_out.status == "retry"
        assert resent.status == "delivered" and resent.warning is None
        assert nxt.status == "delivered" and nxt.warning is None
        assert peer.received == [(1, "C1"), (2, "C1"), (2, "C2")]
    run(scenario)


def test_peer_closing_the_connection_means_retry_then_reconnect() -> None:
    async def scenario() -> None:
        peer = await Peer(script=["close"]).start()
        async with MllpSender(endpoint(peer.port)) as sender:
            outcome = await FAST.run(lambda: sender.send(message("C1")))
            after = await sender.send(message("C2"))
        await peer.stop()
        assert outcome.status == "delivered"
        assert after.status == "delivered"
        assert peer.received == [(1, "C1"), (2, "C1"), (2, "C2")]
    run(scenario)


def test_peer_closing_between_messages_is_noticed_before_sending() -> None:
    async def scenario() -> None:
        peer = await Peer(default="AA+close").start()
        async with MllpSender(endpoint(peer.port)) as sender:
            first = await sender.send(message("C1"))
            await asyncio.sleep(0.05)  # the peer's FIN arrives
            second = await sender.send(message("C2"))
        await peer.stop()
        assert first.delivered and second.delivered  # no failed attempt: the sender reconnected first
        assert peer.received == [(1, "C1"), (2, "C2")]
        assert sender.connections_opened == 2
    run(scenario)


def test_enhanced_mode_waits_for_the_application_ack_when_asked() -> None:
    async def scenario() -> None:
        peer = await Peer(script=["CA+AA", "CA+AE", "CA"]).start()
        async with MllpSender(endpoint(peer.port, wait_for_application_ack=True)) as waiting:
            ok = await waiting.send(message("E1", enhanced=True))
            failed = await waiting.send(message("E2", enhanced=True))
        async with MllpSender(endpoint(peer.port)) as commit_only:
            committed = await commit_only.send(message("E3", enhanced=True))
        await peer.stop()
        assert (ok.status, ok.ack_code) == ("delivered", "AA")
        assert (failed.status, failed.ack_code) == ("dead", "AE")
        assert failed.detail is not None and "No such product" in failed.detail
        assert (committed.status, committed.ack_code) == ("delivered", "CA")
    run(scenario)


def test_enhanced_mode_without_application_ack_times_out_and_retries() -> None:
    async def scenario() -> None:
        peer = await Peer(script=["CA"]).start()
        short = endpoint(peer.port, wait_for_application_ack=True, read_timeout_s=0.2)
        async with MllpSender(short) as sender:
            outcome = await sender.send(message("E1", enhanced=True))
        await peer.stop()
        assert outcome.status == "retry" and outcome.detail is not None
        assert "application ACK" in outcome.detail
    run(scenario)


def test_peer_down_then_back_drains_in_order() -> None:
    async def scenario() -> None:
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()  # nothing listens there now
        async with MllpSender(endpoint(port)) as sender:
            down = await sender.send(message("C1"))
            assert down.status == "retry" and down.detail is not None and "connect" in down.detail
            peer = await Peer().start(port)
            outcomes = [await FAST.run(lambda i=i: sender.send(message(f"C{i}"))) for i in (1, 2, 3)]
        await peer.stop()
        assert [o.status for o in outcomes] == ["delivered"] * 3
        assert [c for _, c in peer.received] == ["C1", "C2", "C3"]
    run(scenario)


def test_connect_timeout_applies_to_an_injected_factory() -> None:
    async def hang() -> Any:
        await asyncio.sleep(10)

    async def scenario() -> None:
        sender = MllpSender(endpoint(1, connect_timeout_s=0.1), connection_factory=hang)
        outcome = await sender.send(message("C1"))
        assert outcome.status == "retry"
        assert outcome.detail is not None and "connect timeout" in outcome.detail
        assert outcome.latency_ms is not None and outcome.latency_ms < 1000
    run(scenario)


def test_a_message_that_cannot_be_framed_is_dead_at_once() -> None:
    async def scenario() -> None:
        sender = MllpSender(endpoint(1))
        outcome = await sender.send(message("C1", note="bad\x1cbyte"))
        assert outcome.status == "dead" and outcome.detail is not None and "0x1C" in outcome.detail
        assert sender.connections_opened == 0
    run(scenario)


class CountingWriter:
    """Wraps a real StreamWriter and records every write call."""

    def __init__(self, inner: asyncio.StreamWriter) -> None:
        self.inner = inner
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.inner.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_nagle_regression_one_write_per_message_and_tcp_nodelay_set() -> None:
    async def scenario() -> None:
        peer = await Peer().start()
        writers: list[CountingWriter] = []

        async def factory() -> tuple[asyncio.StreamReader, CountingWriter]:
            reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)  # the sender must turn it on
            writers.append(CountingWriter(writer))
            return reader, writers[-1]

        async with MllpSender(endpoint(peer.port), connection_factory=factory) as sender:
            outcomes = [await sender.send(message(f"N{i}")) for i in range(20)]
            sock = writers[0].get_extra_info("socket")
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        await peer.stop()
        assert all(o.delivered for o in outcomes)
        assert len(writers) == 1 and len(writers[0].writes) == 20
        assert all(w.startswith(b"\x0bMSH") and w.endswith(b"\x1c\x0d") for w in writers[0].writes)
    run(scenario)


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "peer.crt", tmp_path / "peer.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=site-engine", "-addext", "subjectAltName=DNS:site-engine,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def test_tls_delivery_verifies_the_peer_certificate(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    trusting = ssl.create_default_context(cafile=str(cert))
    untrusting = ssl.create_default_context()  # system roots only: our self-signed peer fails

    async def scenario() -> None:
        peer = Peer()
        peer.server = await hl7.mllp.start_hl7_server(peer._handle, "127.0.0.1", 0, encoding="utf-8",
                                                      ssl=server_ctx)
        port = peer.server.sockets[0].getsockname()[1]
        slow = {"read_timeout_s": 1.0, "connect_timeout_s": 1.0}
        async with MllpSender(endpoint(port, ssl=trusting, **slow)) as sender:
            ok = await sender.send(message("T1"))
            assert sender.endpoint.destination == f"mllps://127.0.0.1:{port}"
        async with MllpSender(endpoint(port, ssl=untrusting, **slow)) as sender:
            refused = await sender.send(message("T2"))
        await peer.stop()
        assert ok.delivered
        assert refused.status == "retry" and refused.detail is not None and "connect failed" in refused.detail
        assert [c for _, c in peer.received] == ["T1"]
    run(scenario)
