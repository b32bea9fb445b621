"""Shared pieces for the delivery tests (no tests here): a real MLLP peer (python-hl7's asyncio
server on loopback) that misbehaves on demand and runs on its own event loop thread, so in-process
workers and worker subprocesses alike can talk to it; outbox helpers; fast worker settings."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hl7
import hl7.mllp
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from adapters.retry import RetryPolicy
from gateway.delivery.outbox import (
    DeliveryAlert,
    DeliveryAttempt,
    MessageState,
    NewMessage,
    OutboxMessage,
    enqueue,
)
from gateway.delivery.worker import WorkerSettings
from gateway.store.db import write_session
from mappings.profile.delivery import DeliverySettings, FhirPushEndpoint, MllpEndpoint
from mappings.profile.loader import load_profile
from mappings.profile.schema import SiteProfile

__all__ = ["FAST_RETRY", "FAST", "PeerLoop", "Peer", "er7", "enqueue_mllp", "enqueue_raw", "wait_until",
           "site_profile", "messages", "attempts", "alerts", "received_in_order_allowing_resends"]

ROOT = Path(__file__).resolve().parents[2]
FAST_RETRY = RetryPolicy(initial_s=0.02, max_delay_s=0.1, jitter_s=0.0)
FAST = WorkerSettings(lease_seconds=5.0, poll_interval_s=0.01, retry=FAST_RETRY, db_error_pause_s=0.02)


def er7(control_id: str, note: str = "Zoë O'Brien") -> str:
    return ("MSH|^~\\&|CGT_GW|CGT|SITE_EHR|SITE_A|20261121120000||OML^O21^OML_O21|"
            f"{control_id}|P|2.5.1\rPID|1||MRN1^^^SITE_A^MR||{note}\r")


def site_profile(site_id: str = "site-a", *, mllp_port: int | None = None, read_timeout_s: float = 5.0,
                 fhir_url: str | None = None, auth: dict[str, Any] | None = None,
                 enhanced: bool = False) -> SiteProfile:
    """The demo profile for ``site_id`` with a ``delivery`` section pointing at test endpoints."""
    base = load_profile(ROOT / "fixtures" / "profiles" / "site-a.yaml")
    mllp = (MllpEndpoint(host="127.0.0.1", port=mllp_port, connect_timeout_s=0.3,
                         read_timeout_s=read_timeout_s, wait_for_application_ack=enhanced)
            if mllp_port else None)
    push = FhirPushEndpoint(base_url=fhir_url, timeout_s=2, **({"auth": auth} if auth else {})) \
        if fhir_url else None
    return base.model_copy(update={"site_id": site_id, "delivery": DeliverySettings(mllp=mllp, fhir_push=push,
                                                                                      max_attempts_before_alert=3)})


def enqueue_raw(engine: Engine, destination: str, channel: str, items: Iterable[tuple[str, str]], *,
                content_type: str = "application/hl7-v2", message_type: str = "OML^O21",
                event_id: str = "EV-1") -> None:
    """Queue (control_id, payload) pairs for ``destination`` in one transaction, as the pipeline does."""
    with write_session(engine) as session:
        enqueue(session, [NewMessage(destination=destination, channel=channel, control_id=cid,
                                     message_type=message_type, content_type=content_type, payload=payload)
                          for cid, payload in items],
                site_id="site-a", manufacturer_id="acme-bio", order_id="ORD-1", event_id=event_id,
                now=datetime.now(UTC))


def enqueue_mllp(engine: Engine, control_ids: Iterable[str], destination: str = "site-a/mllp") -> None:
    enqueue_raw(engine, destination, "mllp", [(cid, er7(cid)) for cid in control_ids])


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Poll ``predicate`` (a guard against hanging, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.01)


def messages(engine: Engine, destination: str | None = None) -> list[OutboxMessage]:
    with Session(engine) as session:
        stmt = select(OutboxMessage).order_by(OutboxMessage.id)  # type: ignore[arg-type]
        if destination:
            stmt = stmt.where(OutboxMessage.destination == destination)
        return list(session.exec(stmt))


def attempts(engine: Engine, message_id: int) -> list[DeliveryAttempt]:
    with Session(engine) as session:
        return list(session.exec(select(DeliveryAttempt).where(DeliveryAttempt.message_id == message_id)
                                 .order_by(DeliveryAttempt.id)))  # type: ignore[arg-type]


def alerts(engine: Engine) -> list[DeliveryAlert]:
    with Session(engine) as session:
        return list(session.exec(select(DeliveryAlert).order_by(DeliveryAlert.id)))  # type: ignore[arg-type]


def all_finished(engine: Engine) -> bool:
    return all(m.state != MessageState.pending for m in messages(engine))


def received_in_order_allowing_resends(received: list[str], expected: list[str]) -> bool:
    """True if ``received`` is ``expected`` in order where a message may repeat only right after itself
    (a resend of the same MSH-10), never out of order and never missing."""
    collapsed = [cid for i, cid in enumerate(received) if i == 0 or received[i - 1] != cid]
    return collapsed == expected


# --------------------------------------------------------------------------- the peer


class PeerLoop:
    """An event loop on a daemon thread that hosts peers."""

    def __init__(self) -> None:
        self.peers: list[Peer] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mllp-peers", daemon=True)
        self.thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        for peer in self.peers:
            peer.stop()
        self.call(asyncio.sleep(0.05))  # let closed transports finish closing
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()


@dataclass
class Peer:
    """A site engine answering each message by the next behaviour in ``script`` (then ``default``).

    Behaviours: an ACK code (``AA``, ``AR``, ``CA``...), ``AE`` (with error text), ``CA+AA`` and
    ``CA+AE`` (enhanced mode: commit ACK, then the application ACK), ``wrong-id``
    (MSA-2 of someone else), ``silent`` (never answers), ``late`` (AA after ``late_s``).
    It counts messages in flight across all its connections: ``overlaps`` > 0 means two were in flight
    at once.  ``hold`` (a threading.Event) makes it wait before answering while set.
    """

    loop: PeerLoop
    script: list[str] = field(default_factory=list)
    default: str = "AA"
    late_s: float = 0.5
    delay_s: float = 0.0
    received: list[str] = field(default_factory=list)
    connections: int = 0
    in_flight: int = 0
    overlaps: int = 0
    port: int = 0
    on_receive: Callable[[str], None] | None = None
    _server: Any = None
    _writers: list[Any] = field(default_factory=list)

    def start(self, port: int = 0) -> Peer:
        self.loop.call(self._start(port))
        self.loop.peers.append(self)
        return self

    async def _start(self, port: int) -> None:
        self._server = await hl7.mllp.start_hl7_server(self._handle, "127.0.0.1", port, encoding="utf-8")
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stop listening and drop every connection (the site engine goes down)."""
        self.loop.call(self._stop())

    async def _stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.close()
        for writer in writers:
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: hl7.mllp.HL7StreamReader, writer: hl7.mllp.HL7StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        busy = False
        try:
            while True:
                try:
                    msg = await reader.readmessage()
                except (asyncio.IncompleteReadError, ConnectionError, OSError):
                    return
                control_id = str(msg.segment("MSH")[10])
                if busy:  # the previous message on this connection was never answered
                    self.in_flight -= 1
                self.in_flight += 1
                busy = True
                if self.in_flight > 1:
                    self.overlaps += 1
                self.received.append(control_id)
                if self.on_receive is not None:
                    self.on_receive(control_id)
                behaviour = self.script.pop(0) if self.script else self.default
                if behaviour == "silent":
                    continue
                if behaviour == "late":
                    await asyncio.sleep(self.late_s)
                    behaviour = "AA"
                elif self.delay_s:
                    await asyncio.sleep(self.delay_s)
                self.in_flight -= 1
                busy = False
                if behaviour.startswith("CA+"):
                    writer.writemessage(_ack(msg, "CA"))
                    await writer.drain()
                    await asyncio.sleep(0.01)
                    code = behaviour[3:]
                    text = "Unknown product CART-XX" if code == "AE" else None
                    writer.writemessage(_ack(msg, code, text=text))
                elif behaviour == "wrong-id":
                    writer.writemessage(_ack(msg, "AA", msa2="SOMEONE-ELSE"))
                elif behaviour == "AE":
                    writer.writemessage(_ack(msg, "AE", text="Unknown product CART-XX"))
                else:
                    writer.writemessage(msg.create_ack(behaviour, message_id=f"ACK-{control_id}"))
                await writer.drain()
        except (ConnectionError, OSError):
            return
        finally:
            if busy:
                self.in_flight -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


def _ack(msg: hl7.Message, code: str, *, msa2: str | None = None, text: str | None = None) -> hl7.Message:
    control_id = str(msg.segment("MSH")[10])
    ack = str(msg.create_ack(code, message_id=f"ACK-{control_id}"))
    ack = ack.replace(f"MSA|{code}|{control_id}", f"MSA|{code}|{msa2 or control_id}")
    if text:
        ack += f"|{text}\rERR|||207^Application internal error^HL70357|E||||{text}"
    return hl7.parse(ack)


# --------------------------------------------------------------------------- worker subprocesses


def write_config(directory: Path, database_url: str, mllp_ports: dict[str, int], *,
                 read_timeout_s: float = 5.0, demo_clients: bool = False) -> Path:
    """A gateway configuration whose sites (one per entry) deliver over MLLP to the given ports."""
    import yaml

    demo = yaml.safe_load((ROOT / "gateway" / "demo" / "gateway.yaml").read_text(encoding="utf-8"))
    template = (ROOT / "fixtures" / "profiles" / "site-a.yaml").read_text(encoding="utf-8")
    assert "\ndelivery:" not in template
    sites = []
    for site_id, port in mllp_ports.items():
        profile = directory / f"{site_id}.yaml"
        profile.write_text(template.replace("site_id: site-a", f"site_id: {site_id}") + (
            f"\ndelivery:\n  mllp:\n    host: 127.0.0.1\n    port: {port}\n"
            f"    connect_timeout_s: 1\n    read_timeout_s: {read_timeout_s}\n"), encoding="utf-8")
        sites.append({"id": site_id, "name": site_id, "profile": str(profile)})
    config = {"database_url": database_url, "log_level": "INFO", "manufacturers": demo["manufacturers"],
              "sites": sites, "api_clients": demo["api_clients"] if demo_clients else []}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_worker_process(config: Path, log: Path, *, lease_seconds: float = 1.0,
                         poll_interval_s: float = 0.01) -> Any:
    """``python -m gateway.cli.outbox worker`` (what ``cgt-gateway worker`` runs) with fast settings."""
    import subprocess
    import sys

    with log.open("ab") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli.outbox", "worker", "--config", str(config),
             "--lease-seconds", str(lease_seconds), "--poll-interval", str(poll_interval_s),
             "--retry-initial", "0.02", "--retry-max", "0.1", "--retry-jitter", "0"],
            cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
