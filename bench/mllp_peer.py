"""A loopback site engine for the delivery benchmark: python-hl7's asyncio MLLP server answering every
message with ``AA`` (``hl7.Message.create_ack``), recording when each MSH-10 was acknowledged.

Runs on its own event loop in a thread of the benchmark process, so its clock
(``time.perf_counter``) is the one the benchmark uses to time events end to end.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import hl7
import hl7.mllp

__all__ = ["Peer"]


class Peer:
    def __init__(self) -> None:
        self.acked: dict[str, float] = {}  # MSH-10 -> perf_counter when its ACK was written
        self.order: list[str] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: Any = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mllp-peer", daemon=True)

    def __enter__(self) -> Peer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("MLLP peer did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reset(self) -> None:
        self.acked = {}
        self.order = []

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.perf_counter() + timeout_s
        while len(self.order) < count:
            if time.perf_counter() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            hl7.mllp.start_hl7_server(self._handle, "127.0.0.1", 0, encoding="utf-8")
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._server.close()

    async def _handle(self, reader: Any, writer: Any) -> None:
        try:
            while not writer.is_closing():
                message = await reader.readmessage()
                writer.writemessage(message.create_ack())
                await writer.drain()
                control_id = str(message.segment("MSH")[10])
                self.acked[control_id] = time.perf_counter()
                self.order.append(control_id)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
