"""A sending process for the delivery benchmark: ``python -m bench.mllp_client KIND PORT < messages.json``.

``bare``: python-hl7's own asyncio client (``hl7.mllp.open_hl7_connection``), one connection, one
message at a time, waiting for each ACK.  ``sender``: the gateway's ``adapters.mllp.client.MllpSender``
the same way (no outbox, no database).  Prints ``{"sent", "elapsed_s", "per_s", "failed"}``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from typing import Any

__all__ = ["send_bare", "send_sender"]


async def send_bare(port: int, messages: list[str]) -> tuple[float, int]:
    import hl7
    import hl7.mllp

    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the gateway does: no Nagle stalls
    failed = 0
    started = time.perf_counter()
    for er7 in messages:
        writer.writemessage(hl7.parse(er7))
        await writer.drain()
        ack = await reader.readmessage()
        if str(ack.segment("MSA")[1]) != "AA":
            failed += 1
    elapsed = time.perf_counter() - started
    writer.close()
    return elapsed, failed


async def send_sender(port: int, messages: list[str]) -> tuple[float, int]:
    from adapters.mllp.client import MllpEndpoint, MllpSender

    failed = 0
    async with MllpSender(MllpEndpoint("127.0.0.1", port)) as sender:
        started = time.perf_counter()
        for er7 in messages:
            outcome = await sender.send(er7)
            failed += 0 if outcome.delivered else 1
        elapsed = time.perf_counter() - started
    return elapsed, failed


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    messages: list[str] = json.loads(sys.stdin.read())
    send = {"bare": send_bare, "sender": send_sender}[kind]
    elapsed, failed = asyncio.run(send(port, messages))
    result: dict[str, Any] = {
        "sent": len(messages),
        "elapsed_s": round(elapsed, 3),
        "per_s": round(len(messages) / elapsed, 1),
        "failed": failed,
    }
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
