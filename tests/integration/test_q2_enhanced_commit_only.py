"""Enhanced mode, commit ACK only (``wait_for_application_ack: false``, the default) against a site
engine that does what MSH-16 = AL asks: a commit ACK (CA), then the application ACK on the same
connection.  The application ACK of a message already counted delivered on its CA must not be taken
for the next message's ACK (that was a false MSA-2 warning and a duplicate send of every other message).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import hl7
import hl7.mllp

from adapters.mllp.client import MllpEndpoint, MllpSender
from adapters.mllp.framing import frame
from tests.integration.test_delivery_support import Peer, PeerLoop


def enhanced(control_id: str) -> str:
    return ("MSH|^~\\&|CGT-GATEWAY|CGTGW|EPIC|SITE-A|20261121120000||OML^O21^OML_O21|"
            f"{control_id}|P|2.5.1|||AL|AL||UNICODE UTF-8\rPID|1||MRN1^^^SITEA^MR||Zoë\r")


def test_application_acks_after_commit_acks_are_not_taken_for_the_next_message(peers: PeerLoop) -> None:
    peer = Peer(peers, default="CA+AA").start()
    ids = [f"E{i}" for i in range(6)]

    async def scenario() -> list[tuple[str, str | None, bool]]:
        results = []
        endpoint = MllpEndpoint("127.0.0.1", peer.port, connect_timeout_s=1, read_timeout_s=1)
        async with MllpSender(endpoint) as sender:
            for control_id in ids:
                outcome = await sender.send(enhanced(control_id))
                results.append((outcome.status, outcome.ack_code, outcome.warning is None))
                await asyncio.sleep(0.05)  # the worker records the outcome: the AA arrives meanwhile
            opened = sender.connections_opened
        assert opened == 1  # one persistent connection, never dropped for an "unknown" ACK
        return results

    results = asyncio.run(scenario())
    assert results == [("delivered", "CA", True)] * len(ids)
    assert peer.received == ids  # each sent exactly once


def test_a_stale_application_ack_arriving_in_the_same_read_as_the_commit_ack_is_skipped() -> None:
    """CA and AA in ONE TCP write: the AA sits in the sender's buffer when the next message goes."""
    received: list[str] = []

    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    msg = await reader.readmessage()
                    control_id = str(msg.segment("MSH")[10])
                    received.append(control_id)
                    acks = [str(msg.create_ack(code, message_id=f"{code}-{control_id}"))
                            for code in ("CA", "AA")]
                    both = b"".join(frame(ack.encode()) for ack in acks)
                    writer.write(both)
                    await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    statuses, opened = _send_enhanced(handle, ("B1", "B2", "B3"))
    assert statuses == ["delivered"] * 3
    assert received == ["B1", "B2", "B3"]
    assert opened == 1  # the stale AA is dropped from the buffer, not a reason to reconnect


def test_stray_bytes_after_an_ack_do_not_cost_a_reconnect_per_message() -> None:
    """An engine that ends each ACK frame with an extra line feed: the stray byte is dropped (it is
    outside any frame), the connection is kept and nothing is sent twice."""
    received: list[str] = []

    async def handle(reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    msg = await reader.readmessage()
                    received.append(str(msg.segment("MSH")[10]))
                    writer.write(frame(str(msg.create_ack("AA", message_id="A1")).encode()) + b"\n")
                    await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    statuses, opened = _send_enhanced(handle, ("S1", "S2", "S3"))
    assert statuses == ["delivered"] * 3
    assert received == ["S1", "S2", "S3"]
    assert opened == 1


def test_a_late_application_rejection_is_reported_as_a_warning_not_swallowed(peers: PeerLoop) -> None:
    """Commit-only mode counts E1 delivered on its CA; the site's application then answers AE.  That must
    reach an operator: it rides on the next outcome as a warning (the worker records it as an alert)."""
    peer = Peer(peers, script=["CA+AE"], default="CA+AA").start()

    async def scenario() -> list[tuple[str, str | None]]:
        endpoint = MllpEndpoint("127.0.0.1", peer.port, connect_timeout_s=1, read_timeout_s=1)
        results = []
        async with MllpSender(endpoint) as sender:
            for control_id in ("R1", "R2", "R3"):
                outcome = await sender.send(enhanced(control_id))
                results.append((outcome.status, outcome.warning))
                await asyncio.sleep(0.05)
        return results

    (first, first_warning), (second, second_warning), (third, third_warning) = asyncio.run(scenario())
    assert (first, second, third) == ("delivered", "delivered", "delivered")
    assert first_warning is None and third_warning is None
    assert second_warning is not None and "AE" in second_warning and "R1" in second_warning
    assert "Unknown product" not in second_warning  # codes and ids only
    assert peer.received == ["R1", "R2", "R3"]


def test_a_truly_foreign_ack_is_still_a_warning_and_a_retry(peers: PeerLoop) -> None:
    """Only application ACKs of messages we settled on their CA are skipped; any other MSA-2 still warns."""
    peer = Peer(peers, script=["wrong-id"], default="AA").start()

    async def scenario() -> tuple[str, bool]:
        endpoint = MllpEndpoint("127.0.0.1", peer.port, connect_timeout_s=1, read_timeout_s=1)
        async with MllpSender(endpoint) as sender:
            outcome = await sender.send(enhanced("F1"))
        return outcome.status, outcome.warning is not None

    assert asyncio.run(scenario()) == ("retry", True)


def _send_enhanced(handle: Any, control_ids: tuple[str, ...]) -> tuple[list[str], int]:
    """Send ``control_ids`` in enhanced mode to a python-hl7 server running ``handle``; the
    outcome statuses and how many connections the sender opened."""

    async def scenario() -> tuple[list[str], int]:
        server = await hl7.mllp.start_hl7_server(handle, "127.0.0.1", 0, encoding="utf-8")
        port = server.sockets[0].getsockname()[1]
        endpoint = MllpEndpoint("127.0.0.1", port, connect_timeout_s=1, read_timeout_s=1)
        statuses = []
        async with MllpSender(endpoint) as sender:
            for control_id in control_ids:
                statuses.append((await sender.send(enhanced(control_id))).status)
            opened = sender.connections_opened
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)  # let the handler see the close and release its socket
        return statuses, opened

    return asyncio.run(asyncio.wait_for(scenario(), timeout=10))
