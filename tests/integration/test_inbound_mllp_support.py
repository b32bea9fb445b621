"""Shared pieces of the inbound MLLP tests: the site's messages, a running site listener, a site client.

The site is python-hl7's ``hl7.client.MLLPClient`` (what an interface engine's test harness uses);
it reads one ``recv`` per message, so the enhanced-mode second ACK is read from its socket here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hl7.client
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapters.mllp.framing import FrameReader
from gateway.context import Context
from gateway.delivery.outbox import list_messages
from gateway.inbound.mllp import InboundListeners
from mappings.profile.inbound import InboundSettings, MllpListen
from tests.conftest import ACME_COI

SAMPLES = Path(__file__).resolve().parents[2] / "fixtures" / "inbound"
SAMPLE_ORDER = "ORD-1001"
SAMPLE_COI = "CHA999923A1B2C3M"


def message(name: str, order_id: str, control_id: str, *, version: str = "2.5.1", coi: str = ACME_COI,
            **replace: str) -> str:
    """A sample of ``fixtures/inbound/<version>/<name>.hl7`` for ``order_id`` with MSH-10 ``control_id``
    (segments end in CR); ``replace`` maps more old -> new text."""
    text = (SAMPLES / version / f"{name}.hl7").read_bytes().decode().replace(SAMPLE_ORDER, order_id)
    text = text.replace(SAMPLE_COI, coi)
    msh, rest = text.split("\r", 1)
    fields = msh.split("|")
    fields[9] = control_id
    text = "|".join(fields) + "\r" + rest
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


def on_port_zero(context: Context, site_id: str = "site-a", **listen: Any) -> Context:
    """``context`` whose ``site_id`` listens on 127.0.0.1, a free port (and ``listen`` changes)."""
    profile = context.profiles[site_id]
    mllp = MllpListen(**{"host": "127.0.0.1", "port": 1, **listen}).model_copy(update={"port": 0})
    profile = profile.model_copy(update={"inbound": InboundSettings(mllp=mllp)})
    return dataclasses.replace(context, profiles={**context.profiles, site_id: profile})


@contextmanager
def listening(context: Context, site_id: str = "site-a", **listen: Any) -> Iterator[int]:
    """The site's inbound listener (``InboundListeners``) on a loop in a thread; yields its port."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listeners = InboundListeners(on_port_zero(context, site_id, **listen))
    try:
        asyncio.run_coroutine_threadsafe(listeners.start(), loop).result(10)
        yield listeners.ports[site_id]
    finally:
        asyncio.run_coroutine_threadsafe(listeners.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class Site:
    """A site engine on one connection: python-hl7's MLLPClient, plus reading further ACK frames."""

    def __init__(self, port: int, timeout: float = 20.0) -> None:
        self.client = hl7.client.MLLPClient("127.0.0.1", port)
        self.client.socket.settimeout(timeout)
        self.frames = FrameReader(1024 * 1024)

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()

    def _next(self, first: bytes | None = None) -> str:
        if first:
            self.frames.feed(first)
        while True:
            found = self.frames.next_message()
            if found is not None:
                return found.decode("utf-8")
            data = self.client.socket.recv(65536)
            if not data:
                raise ConnectionError("the gateway closed the connection")
            self.frames.feed(data)

    def send(self, er7: str, answers: int = 2) -> list[str]:
        """Send one message (MLLPClient.send_message) and return the ``answers`` ACKs that follow."""
        first = self.client.send_message(er7)
        acks = [self._next(first if isinstance(first, bytes) else first.encode())]
        while len(acks) < answers:
            acks.append(self._next())
        return acks

    def send_raw(self, data: bytes, answers: int = 1) -> list[str]:
        self.client.socket.sendall(data)
        return [self._next() for _ in range(answers)]

    def closed(self) -> bool:
        """True once the gateway has closed the connection (reads EOF)."""
        try:
            return self.client.socket.recv(1) == b""
        except (TimeoutError, ConnectionResetError):
            return False


def segments(er7: str) -> dict[str, list[list[str]]]:
    """Segments by id, each split into fields (index = field number for non-MSH segments)."""
    found: dict[str, list[list[str]]] = {}
    for line in er7.replace("\n", "\r").split("\r"):
        if line:
            found.setdefault(line[:3], []).append(line.split("|"))
    return found


def ack_code(er7: str) -> str:
    return segments(er7)["MSA"][0][1]


def site_outbox(engine: Engine, site_id: str = "site-a") -> list[str]:
    """The HL7v2 payloads queued for the site, oldest first."""
    with Session(engine) as session:
        return [m.payload for m in list_messages(session, destination=f"{site_id}/mllp", limit=1000)]


def order_controls(engine: Engine, order_id: str, site_id: str = "site-a") -> list[str]:
    """ORC-1 of every message queued to the site for ``order_id`` (first ORC of each), oldest first."""
    controls = []
    for payload in site_outbox(engine, site_id):
        orc = segments(payload).get("ORC")
        if orc and orc[0][2].split("^")[0] == order_id:
            controls.append(orc[0][1])
    return controls
