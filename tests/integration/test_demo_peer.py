"""The demo site engine (``cgt-gateway demo-peer``): a loopback MLLP sink that ACKs AA, and AE/AR for
the control ids it is told (options or control file).  Every ACK validates with hl7apy STRICT for the
message's version; the gateway's own sender judges them as its policy says (AA delivered, AE dead,
AR retry); logs carry control ids, never message content."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.mllp.client import MllpEndpoint, MllpSender
from adapters.mllp.framing import FrameReader, frame
from gateway.cli.demo_peer import DemoPeer, DemoPeerThread, parse_control_file
from mappings.er7.ack import parse_ack
from tests.e2e.serving import free_port
from tests.unit.inbound_cases import validate_strict

GOLDENS = Path(__file__).resolve().parents[2] / "fixtures" / "expected"
CLI = Path(sys.executable).parent / "cgt-gateway"


def golden_messages(site: str) -> list[str]:
    """The messages of a site's journey golden (blocks separated by blank lines, '#' comments)."""
    text = (GOLDENS / site / "journey-autologous.hl7").read_text()
    blocks = [b for b in text.split("\n\n") if "MSH|" in b]
    return ["\r".join(line for line in b.splitlines() if line and not line.startswith("#")) + "\r"
            for b in blocks]


def msh10(er7: str) -> str:
    return er7.split("\r", 1)[0].split("|")[9]


async def exchange(port: int, messages: list[str]) -> list[str]:
    """Raw client: send each framed message, read its one ACK."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    frames = FrameReader()
    acks = []
    try:
        for er7 in messages:
            writer.write(frame(er7.encode()))
            await writer.drain()
            while (ack := frames.next_message()) is None:
                data = await asyncio.wait_for(reader.read(65536), 5)
                assert data, "the peer closed the connection"
                frames.feed(data)
            acks.append(ack.decode())
    finally:
        writer.close()
    return acks


@pytest.mark.parametrize("site", ["site-a", "site-b"])
def test_every_message_gets_a_strict_valid_aa_or_the_code_it_was_told(site: str, caplog) -> None:
    messages = golden_messages(site)[:3]
    assert len(messages) == 3
    ae, ar = msh10(messages[1]), msh10(messages[2])

    async def run() -> tuple[list[str], DemoPeer]:
        peer = DemoPeer(ae=[ae], ar=[ar])
        await peer.start()
        try:
            return await exchange(peer.port, messages), peer
        finally:
            await peer.close()

    with caplog.at_level(logging.INFO, logger="gateway.cli.demo_peer"):
        acks, peer = asyncio.run(run())
    enhanced = site == "site-a"  # site-a's profile: enhanced mode (MSH-15/16): the commit ACK answers
    expected = ["CA", "CE", "CR"] if enhanced else ["AA", "AE", "AR"]
    for er7, ack_er7, code in zip(messages, acks, expected, strict=True):
        validate_strict(ack_er7)
        ack = parse_ack(ack_er7)
        assert (ack.code, ack.control_id) == (code, msh10(er7))
        assert ack.header.version == er7.split("\r", 1)[0].split("|")[11]
        if code not in ("AA", "CA"):
            assert ack.text and "told to answer" in ack.text
    assert peer.answered == {c: 1 for c in expected}
    assert peer.received == [msh10(m) for m in messages]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(msh10(m) in logged for m in messages)
    assert "PID" not in logged and "MRN" not in logged and "Okafor" not in logged


def test_the_gateway_sender_judges_the_answers_as_its_policy_says() -> None:
    """AA delivered, AE dead (ACK text kept), AR retry (same MSH-10): what the worker acts on."""
    messages = golden_messages("site-b")[:3]

    async def run() -> list[tuple[str, str | None]]:
        peer = DemoPeer(ae=[msh10(messages[1])], ar=[msh10(messages[2])])
        await peer.start()
        try:
            async with MllpSender(MllpEndpoint("127.0.0.1", peer.port, read_timeout_s=5)) as sender:
                return [((o := await sender.send(m)).status, o.ack_code) for m in messages]
        finally:
            await peer.close()

    assert asyncio.run(run()) == [("delivered", "AA"), ("dead", "AE"), ("retry", "AR")]


def test_control_file_is_reread_when_it_changes(tmp_path: Path) -> None:
    [message] = golden_messages("site-b")[:1]
    control = tmp_path / "peer.ctl"

    async def run() -> list[str]:
        peer = DemoPeer(control_file=control)
        await peer.start()
        codes = []
        try:
            for rules in (None, "# demo\nAE *\n", f"AR {msh10(message)}\n", "not a rule\n", None):
                if rules is None:
                    control.unlink(missing_ok=True)
                else:
                    control.write_text(rules)
                    os.utime(control, (time.time() + len(codes), time.time() + len(codes)))
                [ack] = await exchange(peer.port, [message])
                codes.append(parse_ack(ack).code)
        finally:
            await peer.close()
        return codes

    # a bad control file is ignored (logged), never fatal
    assert asyncio.run(run()) == ["AA", "AE", "AR", "AA", "AA"]


def test_control_file_errors_name_the_line() -> None:
    assert parse_control_file("AE X1\n\nar X2 # comment\n").ae == frozenset({"X1"})
    with pytest.raises(ValueError, match="ctl:2: expected"):
        parse_control_file("AE X1\nAX X2\n", "ctl")


def test_a_message_without_msh_gets_an_ar_and_the_peer_keeps_serving() -> None:
    [message] = golden_messages("site-b")[:1]

    async def run() -> tuple[bytes, str]:
        peer = DemoPeer()
        await peer.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", peer.port)
            writer.write(frame(b"PID|1||X\r"))
            await writer.drain()
            data = await asyncio.wait_for(reader.read(65536), 5)  # nothing to answer from: closed
            writer.close()
            [ack] = await exchange(peer.port, [message])
            return data, ack
        finally:
            await peer.close()

    data, ack = asyncio.run(run())
    assert data == b""
    assert parse_ack(ack).code == "AA"


def test_thread_runner_binds_loopback_and_reports_a_busy_port() -> None:
    runner = DemoPeerThread(DemoPeer())
    runner.start()
    try:
        assert runner.peer.listener.host == "127.0.0.1"
        port = runner.peer.port
        [ack] = asyncio.run(exchange(port, golden_messages("site-b")[:1]))
        assert parse_ack(ack).code == "AA"
        busy = DemoPeerThread(DemoPeer(port=port))
        with pytest.raises(OSError):
            busy.start()
    finally:
        runner.stop()


def test_cli_demo_peer_answers_ae_for_the_given_control_id(tmp_path: Path) -> None:
    messages = golden_messages("site-b")[:2]
    port = free_port()
    env = {**os.environ}
    env.pop("CGT_GATEWAY_CONFIG", None)
    process = subprocess.Popen([str(CLI), "demo-peer", "--port", str(port), "--ae", msh10(messages[1])],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                acks = asyncio.run(exchange(port, messages))
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        assert [parse_ack(a).code for a in acks] == ["AA", "AE"]
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
    assert msh10(messages[1]) in output and "PID" not in output
