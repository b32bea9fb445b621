"""Inbound HL7v2 over MLLP: one listener per site whose profile has ``inbound.mllp``.

Each message a site sends goes through, in order::

    parse_inbound(raw, profile)          # pure: an InboundMessage, or an InboundRefusal answered at once
      -> incoming_request(message, ...)  # the IncomingRequest the service takes
      -> receive(context, incoming, ack=builder)   # one transaction, in a worker thread (bounded)
      -> the ACK stored with the request, sent only now that it is committed

``build_answer`` builds the answer from the service's :class:`~gateway.inbound.requests.Outcome`
inside that transaction, so the ACK is stored with the request and a duplicate (same
``MSH-3|MSH-4|MSH-10``, also after a crash between commit and ACK) gets exactly the same bytes:

* original mode: ``AA`` (stored), or ``AE`` with ERR (ERR-3 the refusal's table 0357 code: 204
  unknown order, 207 a CoI problem; 207 and the lifecycle's reason for a request declined at once);
* enhanced mode (MSH-15/16 valued): ``CA`` (we took the message), then the application ACK as above,
  each only when MSH-15 / MSH-16 asks for it (``AL`` or empty: always, ``NE``: never, ``ER``: on an
  error, ``SU``: on success).  Both are stored as one string, one message after the other, and sent
  as two frames.

A message the parser refuses is answered ``AR``/``AE`` (original mode) or ``CR``/``CE`` (enhanced)
without touching the database.  Framing problems (garbage, oversized, read deadlines) are the
listener's (:mod:`adapters.mllp.server`); its ``reject`` answers ``AR`` (``CR``) built from the first
bytes of the message.  Logs carry the site, request ids, states and ACK codes: never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import ssl
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapters.mllp.server import ListenerLimits, MllpListener, PeerInfo
from gateway.audit import Actor
from gateway.context import Context
from gateway.inbound import requests
from gateway.inbound.requests import IncomingRequest, Outcome
from mappings.er7.ack import AckParseError, MessageHeader, read_header
from mappings.er7.charsets import python_codec
from mappings.inbound.ack import build_ack
from mappings.inbound.model import ErrorLocation, InboundMessage, InboundRefusal
from mappings.inbound.parse import parse_inbound
from mappings.profile.inbound import MllpListen
from mappings.profile.schema import SiteProfile

__all__ = [
    "ListenerStartError",
    "SiteHandler",
    "InboundListeners",
    "incoming_request",
    "build_answer",
    "refusal_answer",
    "split_messages",
    "inbound_lifespan",
]

logger = logging.getLogger(__name__)
#: Exit status of the test-only ``inbound_mllp_exit_after_commit`` hook (as a SIGKILLed process).
EXIT_AFTER_COMMIT_STATUS = 137
_MESSAGE_START = re.compile(r"(?<=\r)(?=MSH)")


class ListenerStartError(RuntimeError):
    """A site's listener could not start (address in use, bad TLS files); names the site and port."""


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def incoming_request(message: InboundMessage, site_id: str, peer_host: str) -> IncomingRequest:
    """The service's view of one parsed message: kind, order, requested values (ISO-8601 times), CoI."""
    values = {
        "appointment": message.appointment,
        "start": _iso(message.requested_start),
        "end": _iso(message.requested_end),
        "appointment_action": message.appointment_action,
        "placer_appointment_id": message.placer_appointment_id,
        "filler_appointment_id": message.filler_appointment_id,
        "site_order_number": message.site_order_number,
        "administered_at": _iso(message.administered_at),
    }
    return IncomingRequest(
        site_id=site_id,
        kind=message.kind,
        channel="hl7v2",
        order_ref=message.order_ref,
        # ORC-3.1 / SCH-27.1: our id, or the site's own number once it sent NA
        site_order_ref=(message.filler_order_number.entity_id if message.filler_order_number is not None
                        else None),
        requested={key: value for key, value in values.items() if value is not None},
        reason=message.reason,
        coi=message.coi,
        # the profile puts the CoI in this message type: given, or its place is empty
        coi_required=message.coi is not None or message.coi_missing,
        dedupe_key=f"{message.sending_application}|{message.sending_facility}|{message.control_id}",
        control_id=message.control_id,
        raw=message.raw,
        sender=f"mllp:{peer_host}",
        actor=Actor(f"mllp:{site_id}", f"site:{site_id}", peer_host),
    )


def new_control_id() -> str:
    """An ACK's MSH-10 (20 characters, the limit before 2.5)."""
    return uuid.uuid4().hex[:20]


def _wanted(ack_type: str, *, error: bool) -> bool:
    """MSH-15/16 (table 0155): does the sender want this acknowledgment?  Empty counts as ``AL``."""
    condition = ack_type.strip().upper()
    if condition == "NE":
        return False
    if condition == "ER":
        return error
    if condition == "SU":
        return not error
    return True


def _order_location(message: InboundMessage) -> ErrorLocation:
    """Where the order reference was read (ERR-2 of an unknown-order answer)."""
    code = message.message_type.split("^")[0]
    if code == "SIU":
        return ErrorLocation("SCH", 1, 1 if message.version == "2.3" else 26)
    if code == "ORU" and "\rORC" not in message.raw:
        return ErrorLocation("OBR", 1, 2)
    return ErrorLocation("ORC", 1, 2)


def _coi_location(profile: SiteProfile) -> ErrorLocation:
    where = profile.hl7v2.coi_location
    if where == "OBX":
        return ErrorLocation("OBX", 1, 5)
    if where == "ZCG":
        return ErrorLocation("ZCG", 1, 2)
    return ErrorLocation("ORC", 1, 4)


def build_answer(message: InboundMessage, outcome: Outcome, profile: SiteProfile, *,
                 now: Any, control_id: Callable[[], str] = new_control_id) -> str:
    """The ACK(s) answering ``message`` once ``outcome`` is committed, as one string (see the module)."""
    location: ErrorLocation | None = None
    if outcome.refusal is not None:
        code, error, text = "AE", outcome.refusal.hl7_error, outcome.refusal.detail
        refused = outcome.refusal.code
        location = (_order_location(message) if refused == "unknown-order" else
                    _coi_location(profile) if refused.startswith("coi-") else None)
    elif outcome.declined_at_once:
        reason = outcome.request.decision_reason if outcome.request is not None else None
        code, error, text = "AE", "207", reason or "the order's lifecycle cannot take this request"
    else:
        request = outcome.request
        code, error = "AA", None
        text = f"request {request.request_id} {request.state}" if request is not None else "stored"

    def ack(ack_code: str, **err: Any) -> str:
        return build_ack(message, ack_code=ack_code, now=now, profile=profile, control_id=control_id(), **err)

    application = ack(code, text=text, error_code=error, error_location=location)
    if not message.enhanced_mode:
        return application
    parts = []
    if _wanted(message.header.accept_ack_type, error=False):
        parts.append(ack("CA", text=None))
    if _wanted(message.header.application_ack_type, error=code != "AA"):
        parts.append(application)
    return "".join(parts)


def refusal_answer(refusal: InboundRefusal, profile: SiteProfile, *, now: Any,
                   control_id: Callable[[], str] = new_control_id) -> str:
    """The answer to a message refused before the service: ``AR``/``AE`` (``CR``/``CE`` in enhanced mode)."""
    header = refusal.header
    enhanced = header is not None and header.enhanced_mode
    if enhanced:
        assert header is not None
        if not _wanted(header.accept_ack_type, error=True):
            return ""
        code: str = refusal.commit_code
    else:
        code = refusal.ack_code
    return build_ack(refusal, ack_code=code, text=refusal.text, now=now, profile=profile,
                     control_id=control_id())


def split_messages(answer: str) -> list[str]:
    """The messages of a stored answer (each starts with its MSH segment); empty: none."""
    return [part for part in _MESSAGE_START.split(answer) if part]


class SiteHandler:
    """The listener's handler and reject callback for one site."""

    def __init__(self, context: Context, site_id: str, profile: SiteProfile,
                 limiter: asyncio.Semaphore) -> None:
        self.context = context
        self.site_id = site_id
        self.profile = profile
        self.limiter = limiter
        self.codec = python_codec(profile.hl7v2.charset)  # ACKs: the site's character set

    def _encode(self, answer: str) -> list[bytes]:
        return [part.encode(self.codec, errors="replace") for part in split_messages(answer)]

    async def handle(self, data: bytes, peer: PeerInfo) -> list[bytes]:
        parsed = parse_inbound(data, self.profile)
        if isinstance(parsed, InboundRefusal):
            logger.info("inbound mllp %s connection %d: refused %s %s", self.site_id, peer.connection_id,
                        parsed.ack_code, parsed.error_code)
            return self._encode(refusal_answer(parsed, self.profile, now=self.context.now()))
        incoming = incoming_request(parsed, self.site_id, peer.host)
        async with self.limiter:
            outcome = await asyncio.to_thread(self._receive, parsed, incoming)
        if self.context.settings.inbound_mllp_exit_after_commit:
            logger.warning("inbound mllp: exiting after commit, before the ACK (test hook)")
            logging.shutdown()
            os._exit(EXIT_AFTER_COMMIT_STATUS)
        answer = outcome.ack if outcome.ack is not None else self._answer(parsed, outcome)
        request = outcome.request
        logger.info("inbound mllp %s connection %d: %s%s", self.site_id, peer.connection_id,
                    f"refused {outcome.refusal.code}" if outcome.refusal is not None else
                    f"request {request.request_id if request else '?'} {request.state if request else ''}",
                    "" if outcome.created else " (duplicate: stored answer)")
        return self._encode(answer)

    def _answer(self, message: InboundMessage, outcome: Outcome) -> str:
        return build_answer(message, outcome, self.profile, now=self.context.now())

    def _receive(self, message: InboundMessage, incoming: IncomingRequest) -> Outcome:
        return requests.receive(self.context, incoming, ack=lambda outcome: self._answer(message, outcome))

    def reject(self, reason: str, prefix: bytes) -> bytes:
        """An ``AR`` (``CR``) for a message the listener could not hand over (too large, handler failed)."""
        limit = self.profile.hl7v2.inbound.max_message_bytes
        text = (f"message larger than {limit} bytes" if reason == "message too large"
                else "the message could not be processed; send it again later")
        codec = "utf-8" if self.codec == "ascii" else self.codec
        decoded = prefix.decode(codec, errors="replace").lstrip(" \t\r\n\x0b")
        refusal = InboundRefusal("AR", "207", text, None, _complete_header(decoded), decoded)
        answer = refusal_answer(refusal, self.profile, now=self.context.now())
        return b"".join(self._encode(answer)[:1])


def _complete_header(text: str) -> MessageHeader | None:
    """The MSH of a message's first bytes, when its whole MSH segment is among them."""
    if not text.startswith("MSH") or not re.search(r"[\r\n]", text):
        return None
    try:
        header = read_header(text)
    except AckParseError:
        return None
    return header if header.control_id else None


def _ssl_context(listen: MllpListen, base: Path) -> ssl.SSLContext | None:
    if not listen.tls:
        return None
    assert listen.tls_cert_file and listen.tls_key_file
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(base / listen.tls_cert_file, base / listen.tls_key_file)
    return context


@dataclass
class _Site:
    site_id: str
    listen: MllpListen
    listener: MllpListener | None = None


class InboundListeners:
    """Every enabled site listener of ``context`` (none when ``inbound_mllp_enabled`` is off).
    ``reuse_port``: the listeners bind with SO_REUSEPORT, as every process of ``serve --processes N``
    listens on each site's port (a connection is one process's, so a site's messages on one
    connection keep their order)."""

    def __init__(self, context: Context, *, reuse_port: bool = False) -> None:
        self.context = context
        self.reuse_port = reuse_port
        settings = context.settings
        self.limiter = asyncio.Semaphore(settings.inbound_mllp_max_concurrency)
        self.sites: list[_Site] = []
        if not settings.inbound_mllp_enabled:
            return
        for site_id, profile in context.profiles.items():
            listen = profile.inbound.mllp
            if listen is not None and listen.enabled:
                self.sites.append(_Site(site_id, listen))

    @property
    def ports(self) -> dict[str, int]:
        """The bound port of each started site listener."""
        return {s.site_id: s.listener.port for s in self.sites if s.listener is not None}

    def _listener(self, site: _Site) -> MllpListener:
        settings = self.context.settings
        profile = self.context.profiles[site.site_id]
        handler = SiteHandler(self.context, site.site_id, profile, self.limiter)
        config = settings.site(site.site_id)
        base = config.profile.parent if config is not None else Path.cwd()
        limits = ListenerLimits(
            max_message_bytes=profile.hl7v2.inbound.max_message_bytes,
            read_timeout_s=settings.inbound_mllp_read_timeout_s,
            max_connections=settings.inbound_mllp_max_connections,
            message_timeout_s=settings.inbound_mllp_message_timeout_s,
            write_timeout_s=settings.inbound_mllp_write_timeout_s,
            stop_timeout_s=settings.inbound_mllp_stop_timeout_s,
        )
        return MllpListener(handler.handle, handler.reject, host=site.listen.host, port=site.listen.port,
                            limits=limits, ssl=_ssl_context(site.listen, base),
                            allowed_peers=site.listen.allowed_peers, reuse_port=self.reuse_port)

    async def start(self) -> None:
        """Start every listener, or none: a failure closes those started and raises ListenerStartError."""
        for site in self.sites:
            where = f"{site.listen.host}:{site.listen.port}"
            try:
                listener = self._listener(site)
                await listener.start()
            except (OSError, ssl.SSLError, ValueError) as exc:
                await self.close()
                detail = getattr(exc, "strerror", None) or str(exc)
                raise ListenerStartError(
                    f"site {site.site_id!r}: cannot listen for HL7v2 (MLLP) on {where}: {detail}") from None
            site.listener = listener
            logger.info("inbound mllp listener for site %s on %s:%d", site.site_id, site.listen.host,
                        listener.port)

    async def close(self) -> None:
        for site in self.sites:
            if site.listener is not None:
                listener, site.listener = site.listener, None
                await listener.close()


@contextlib.asynccontextmanager
async def inbound_lifespan(app: Any) -> AsyncIterator[None]:
    """The app's lifespan under ``cgt-gateway serve``: the site listeners run in the server's loop."""
    listeners = InboundListeners(app.state.context, reuse_port=getattr(app.state, "reuse_port", False))
    try:
        await listeners.start()
    except ListenerStartError as exc:
        logger.error("cannot start: %s", exc)
        raise
    app.state.inbound_listeners = listeners
    try:
        yield
    finally:
        await listeners.close()
