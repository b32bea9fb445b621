"""The MLLP sender: one persistent connection to one site engine, one message in flight at a time.

Each framed message goes out in ONE ``write`` with TCP_NODELAY set (otherwise Nagle plus delayed
ACKs cost tens of milliseconds a message).  The answer must arrive within the read deadline; after
a timeout, a framing error, an ACK that is not ours or the peer closing, the connection is dropped,
so a late ACK can never be taken for the next message; the next :meth:`MllpSender.send`
reconnects.  In enhanced mode without ``wait_for_application_ack``, the application ACK a site
sends after its CA is skipped (and commit-ACKed if it asks), never taken for the next message's.
:meth:`MllpSender.send` never raises for network trouble: it returns a
:class:`~adapters.delivery_result.DeliveryOutcome` (``retry`` for anything that may succeed later).
Retrying (same bytes, same MSH-10) and backoff are the caller's (:mod:`adapters.retry`).

Only control ids and the destination are logged, never message content or ACK text.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import ssl as ssl_module
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from adapters.delivery_result import DeliveryOutcome
from adapters.mllp.ack_policy import awaits_application_ack, judge_ack
from adapters.mllp.framing import DEFAULT_MAX_MESSAGE_SIZE, FrameReader, FramingError, frame
from mappings.er7.ack import Ack, AckParseError, build_ack, parse_ack, read_header

__all__ = ["ConnectionFactory", "MllpEndpoint", "MllpSender", "StreamReaderLike", "StreamWriterLike"]

logger = logging.getLogger(__name__)
_READ_CHUNK = 64 * 1024
_CLOSE_TIMEOUT_S = 1.0
_APPLICATION_CODES = frozenset({"AA", "AE", "AR"})
_SETTLED_ON_COMMIT_KEPT = 64  # control ids whose application ACK may still come on this connection


class StreamReaderLike(Protocol):
    async def read(self, n: int = -1) -> bytes: ...
    def at_eof(self) -> bool: ...


class StreamWriterLike(Protocol):
    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    async def wait_closed(self) -> None: ...
    def is_closing(self) -> bool: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: ...


ConnectionFactory = Callable[[], Awaitable[tuple[StreamReaderLike, StreamWriterLike]]]


@dataclass(frozen=True)
class MllpEndpoint:
    """A site engine's MLLP listener and how patiently we talk to it."""

    host: str
    port: int
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 30.0  # deadline for the ACK after the message is written
    ssl: ssl_module.SSLContext | None = None
    server_hostname: str | None = None  # TLS name check, when it differs from host
    encoding: str = "utf-8"  # must agree with the message's MSH-18
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE  # for the ACKs we read
    wait_for_application_ack: bool = False  # enhanced mode: after CA, wait for AA/AE/AR too
    application_ack_timeout_s: float | None = None  # default: read_timeout_s

    @property
    def destination(self) -> str:
        scheme = "mllps" if self.ssl is not None else "mllp"
        return f"{scheme}://{self.host}:{self.port}"


class _Dropped(Exception):
    """Internal: the exchange failed in a way that leaves the connection unusable."""

    def __init__(self, detail: str, warning: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.warning = warning


class MllpSender:
    """Sends HL7v2 messages to one endpoint and judges each ACK (see :mod:`adapters.mllp.ack_policy`).

    ``connection_factory`` replaces ``asyncio.open_connection`` (tests wrap the writer, or point
    it at a misbehaving peer); the connect timeout and TCP_NODELAY apply to it too.
    """

    def __init__(self, endpoint: MllpEndpoint, *,
                 connection_factory: ConnectionFactory | None = None) -> None:
        self.endpoint = endpoint
        self._factory = connection_factory or self._open_connection
        self._reader: StreamReaderLike | None = None
        self._writer: StreamWriterLike | None = None
        self._frames = FrameReader(endpoint.max_message_size)
        self._lock = asyncio.Lock()
        # Enhanced mode, commit ACK only: messages counted delivered on their CA whose application
        # ACK the site may still send on this connection; it is skipped, never taken for another's.
        self._settled_on_commit: collections.deque[str] = collections.deque(maxlen=_SETTLED_ON_COMMIT_KEPT)
        self._late_rejections: list[str] = []  # reported as a warning on the next outcome
        self.connections_opened = 0

    async def __aenter__(self) -> MllpSender:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        self._frames = FrameReader(self.endpoint.max_message_size)
        self._settled_on_commit.clear()
        if writer is not None:
            writer.close()
            try:  # a peer that stopped reading must not hold us here
                async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                    await writer.wait_closed()
            except (OSError, ssl_module.SSLError, TimeoutError):
                pass

    async def send(self, message: str | bytes, *, control_id: str | None = None) -> DeliveryOutcome:
        """Send one message and wait for its ACK.  ``control_id`` defaults to the message's MSH-10."""
        async with self._lock:
            started = time.perf_counter()
            try:
                payload = message.encode(self.endpoint.encoding) if isinstance(message, str) else message
                framed = frame(payload)
                sent_id = control_id if control_id is not None else read_header(
                    payload, encoding=self.endpoint.encoding).control_id
            except (UnicodeEncodeError, FramingError, AckParseError) as exc:
                # the message itself can never go out as it is: no point retrying it
                return self._finish(DeliveryOutcome("dead", detail=f"message cannot be sent: {exc}"),
                                    control_id or "?", started)
            try:
                outcome = await self._exchange(framed, sent_id)
            except _Dropped as exc:
                await self.close()
                outcome = DeliveryOutcome("retry", detail=exc.detail, warning=exc.warning)
            except BaseException:  # cancelled mid-exchange: an ACK may still come, never reuse this stream
                await self.close()
                raise
            if outcome.warning is not None and outcome.status == "retry":
                await self.close()  # an ACK that was not ours: the stream is out of step
            if self._late_rejections:
                notes, self._late_rejections = self._late_rejections, []
                outcome = replace(outcome, warning="; ".join(filter(None, [*notes, outcome.warning])))
            return self._finish(outcome, sent_id, started)

    def _finish(self, outcome: DeliveryOutcome, control_id: str, started: float) -> DeliveryOutcome:
        latency_ms = round((time.perf_counter() - started) * 1000, 3)
        logger.info("mllp %s control_id=%s status=%s ack=%s latency_ms=%s%s", self.endpoint.destination,
                    control_id, outcome.status, outcome.ack_code, latency_ms,
                    " (warning)" if outcome.warning else "")
        return DeliveryOutcome(outcome.status, ack_code=outcome.ack_code, http_status=None,
                               detail=outcome.detail, latency_ms=latency_ms, warning=outcome.warning)

    async def _exchange(self, framed: bytes, sent_id: str) -> DeliveryOutcome:
        writer = await self._connection()
        await self._write(writer, framed)
        _, ack = await self._read_ack(self.endpoint.read_timeout_s, "ACK")
        outcome = judge_ack(sent_id, ack)
        if outcome.delivered and awaits_application_ack(
                ack, wait_for_application_ack=self.endpoint.wait_for_application_ack):
            timeout = self.endpoint.application_ack_timeout_s or self.endpoint.read_timeout_s
            raw, app_ack = await self._read_ack(timeout, "application ACK")
            if app_ack.header.accept_ack_type in ("AL", "SU"):  # the peer wants our commit ACK for it
                await self._commit(writer, raw)
            outcome = judge_ack(sent_id, app_ack, stage="application")
        elif outcome.delivered and ack.code == "CA":
            self._settled_on_commit.append(sent_id)
        return outcome

    async def _late_application_ack(self, raw: bytes, ack: Ack) -> bool:
        """True (and commit-ACKed if asked) if ``ack`` is the application ACK of a message already
        counted delivered on its commit ACK: it answers nothing we are waiting for."""
        if ack.control_id not in self._settled_on_commit or ack.code not in _APPLICATION_CODES:
            return False
        self._settled_on_commit.remove(ack.control_id)
        log = logger.info if ack.code == "AA" else logger.warning
        log("mllp %s application ACK %s for control_id=%s, counted delivered on its commit ACK",
            self.endpoint.destination, ack.code, ack.control_id)
        if ack.code != "AA":  # the site's application refused a message we counted delivered
            self._late_rejections.append(f"application ACK {ack.code} for control_id {ack.control_id}, "
                                         "already counted delivered on its commit ACK")
        if ack.header.accept_ack_type in ("AL", "SU") and self._writer is not None:
            await self._commit(self._writer, raw)
        return True

    async def _drop_late_application_acks(self) -> bool:
        """Take late application ACKs (and stray bytes between frames) off the read buffer; True if
        nothing else was waiting there."""
        while not self._frames.idle:
            try:
                raw = self._frames.next_message()
                if raw is None:  # stray bytes outside a frame are dropped; part of a frame is not ours
                    return self._frames.idle
                if not await self._late_application_ack(raw, parse_ack(raw, encoding=self.endpoint.encoding)):
                    return False
            except (FramingError, AckParseError, _Dropped):
                return False
        return True

    async def _commit(self, writer: StreamWriterLike, raw: bytes) -> None:
        try:
            reply = build_ack(raw.decode(self.endpoint.encoding, errors="replace"), "CA")
            data = frame(reply.encode(self.endpoint.encoding))
        except (ValueError, UnicodeEncodeError):
            logger.warning("mllp %s: cannot commit-ACK the application ACK", self.endpoint.destination)
            return
        await self._write(writer, data)

    @staticmethod
    async def _write(writer: StreamWriterLike, data: bytes) -> None:
        try:
            writer.write(data)  # the whole frame in one write: with TCP_NODELAY, one segment
            await writer.drain()
        except (OSError, ssl_module.SSLError) as exc:
            raise _Dropped(f"send failed: {type(exc).__name__}: {exc}") from exc

    async def _read_ack(self, timeout_s: float, what: str) -> tuple[bytes, Ack]:
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    raw = await self._read_frame()
                    ack = self._parse_ack(raw, what)
                    if not await self._late_application_ack(raw, ack):
                        return raw, ack
        except TimeoutError as exc:
            raise _Dropped(f"no {what} within {timeout_s:g}s (read deadline); connection dropped") from exc
        except FramingError as exc:
            raise _Dropped(f"{what} framing error: {exc}", warning=f"peer broke MLLP framing: {exc}") from exc
        except (OSError, ssl_module.SSLError, EOFError) as exc:
            raise _Dropped(f"connection lost waiting for the {what}: {type(exc).__name__}: {exc}") from exc

    def _parse_ack(self, raw: bytes, what: str) -> Ack:
        try:
            return parse_ack(raw, encoding=self.endpoint.encoding)
        except AckParseError as exc:
            raise _Dropped(f"unreadable {what}: {exc}", warning=f"peer answered with no usable ACK: {exc}") \
                from exc

    async def _read_frame(self) -> bytes:
        assert self._reader is not None
        while (message := self._frames.next_message()) is None:
            data = await self._reader.read(_READ_CHUNK)
            if not data:
                raise EOFError("peer closed the connection")
            self._frames.feed(data)
        return message

    async def _connection(self) -> StreamWriterLike:
        if self._writer is not None and (self._writer.is_closing() or self._reader is None
                                         or self._reader.at_eof()
                                         or not await self._drop_late_application_acks()):
            await self.close()  # closed by the peer, or unasked-for bytes waiting: start clean
        if self._writer is None:
            try:
                async with asyncio.timeout(self.endpoint.connect_timeout_s):
                    reader, writer = await self._factory()
            except TimeoutError as exc:
                raise _Dropped(f"connect timeout after {self.endpoint.connect_timeout_s:g}s") from exc
            except (OSError, ssl_module.SSLError) as exc:
                raise _Dropped(f"connect failed: {type(exc).__name__}: {exc}") from exc
            _set_nodelay(writer)
            self._reader, self._writer = reader, writer
            self.connections_opened += 1
            logger.info("mllp %s connected", self.endpoint.destination)
        return self._writer

    async def _open_connection(self) -> tuple[StreamReaderLike, StreamWriterLike]:
        e = self.endpoint
        return await asyncio.open_connection(
            e.host, e.port, ssl=e.ssl,
            server_hostname=(e.server_hostname or e.host) if e.ssl is not None else None)


def _set_nodelay(writer: StreamWriterLike) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
