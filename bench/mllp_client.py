"""A sending process for the delivery benchmark: ``python -m bench.mllp_client KIND PORT < messages.json``.

``bare``: python-hl7's own asyncio client (``hl7.mllp.open_hl7_connection``), one connection, one
message at a time, waiting for each ACK (parsed by the client).  The messages are handed to it as
``hl7.Message`` objects, as its API takes them, parsed BEFORE the clock starts: the gateway sends
ER7 text rendered beforehand, so parsing the text again (about 0.6 ms a message here, more than the
exchange itself) is not part of sending it.  ``bare-parse``: the same with ``hl7.parse`` of each
message inside the timed loop (how the benchmark measured the baseline before; kept for comparison).
``sender``: the gateway's ``adapters.mllp.client.MllpSender``
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


async def send_bare(port: int, messages: list[str], parse_in_loop: bool = False) -> tuple[float, int]:
    import hl7
    import hl7.mllp

    reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding="utf-8")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as the gateway does: no Nagle stalls
    parsed = None if parse_in_loop else [hl7.parse(er7) for er7 in messages]
    failed = 0
    started = time.perf_counter()
    for n, er7 in enumerate(messages):
        writer.writemessage(hl7.parse(er7) if parsed is None else parsed[n])
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
    if kind == "bare-parse":
        elapsed, failed = asyncio.run(send_bare(port, messages, parse_in_loop=True))
    else:
        elapsed, failed = asyncio.run({"bare": send_bare, "sender": send_sender}[kind](port, messages))
    result: dict[str, Any] = {
        "sent": len(messages),
        "elapsed_s": round(elapsed, 3),
        "per_s": round(len(messages) / elapsed, 1),
        "failed": failed,
    }
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
