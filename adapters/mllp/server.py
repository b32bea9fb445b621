"""The inbound MLLP listener: accepts site engines' connections and hands each message to a handler.

It knows nothing of orders or of HL7 itself: it deframes with :class:`~adapters.mllp.framing.FrameReader`
and, for each complete message, awaits ``handler(message, peer)`` for the answer to send back (the
service commits first: ACK after commit), frames it and writes it in ONE write (TCP_NODELAY set)::

    async def handle(message: bytes, peer: PeerInfo) -> bytes: ...   # commit, then build the ACK
    def reject(reason: str, raw_prefix: bytes) -> bytes: ...          # an AR ACK, built from MSH

    listener = MllpListener(handle, reject, host="0.0.0.0", port=2575, limits=ListenerLimits(),
                            ssl=context_or_None, allowed_peers=["10.1.0.0/16"])
    await listener.start()      # in the service's event loop; listener.port is the bound port
    ...
    await listener.close()      # stop accepting; in-flight handlers finish within stop_timeout_s

Per connection, messages are handled strictly in order: the next one is not taken from the buffer
until the previous answer is written.  Connections are served concurrently, at most
``max_connections`` at once (more are closed at accept).  Peers outside ``allowed_peers`` are
closed at accept, before a byte is read (with TLS: right after the handshake, which asyncio runs
before handing over the connection and bounds by ``tls_handshake_timeout_s``; upgrading a plain
stream instead hangs on uvloop, MagicStack/uvloop#707).  A connection is closed when no byte
arrives within ``read_timeout_s`` (idle between messages or stalled mid-message) or a message
takes longer than ``message_timeout_s`` overall (slow drip).

An oversized message never reaches the handler: the listener drops it as it arrives (the buffer
stays bounded), and once its end block has passed answers ``reject("message too large", first
bytes)``; the connection stays open, so the answer follows the message it answers and the site's
next message is served as usual.  A handler that raises (or returns bytes that cannot be framed)
gets ``reject("internal error", first bytes)`` sent and the connection closed; only the exception's
type is logged.  Broken framing (an end block without its carriage return) closes the connection:
the stream is out of step and the site resends on a fresh one.  The answer may be several messages
(enhanced mode: a commit ACK, then the application ACK), each framed and written on its own, or
none (``b""``).  Logs carry connection ids, peer addresses and byte counts, never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import logging
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from adapters.mllp.framing import DEFAULT_MAX_MESSAGE_SIZE, FrameReader, FramingError, MessageTooLarge, frame

__all__ = [
    "Answer", "Handler", "ListenerLimits", "MllpListener", "Network", "PeerInfo", "Reject", "peer_allowed",
]

logger = logging.getLogger(__name__)
_READ_CHUNK = 64 * 1024
_PREFIX_KEPT = MessageTooLarge.PREFIX_KEPT
_CLOSE_TIMEOUT_S = 1.0

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class PeerInfo:
    """Who sent a message: the peer's address, whether over TLS, and the listener's connection id."""

    host: str
    port: int
    tls: bool
    connection_id: int


Answer = bytes | Sequence[bytes]
Handler = Callable[[bytes, PeerInfo], Awaitable[Answer]]
Reject = Callable[[str, bytes], bytes]


@dataclass(frozen=True)
class ListenerLimits:
    """Bounds on each connection's work.  Every timeout is in seconds."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_SIZE
    read_timeout_s: float = 300.0  # no byte within this: close (idle, or stalled mid-message)
    max_connections: int = 64
    message_timeout_s: float = 120.0  # first byte of a message to its end block
    write_timeout_s: float = 30.0  # the peer must take our answer within this
    tls_handshake_timeout_s: float = 10.0
    stop_timeout_s: float = 10.0  # close(): in-flight handlers get this long to finish

    def __post_init__(self) -> None:
        if self.max_message_bytes < 1 or self.max_connections < 1:
            raise ValueError("max_message_bytes and max_connections must be positive")
        for name in ("read_timeout_s", "message_timeout_s", "write_timeout_s", "tls_handshake_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if not self.stop_timeout_s >= 0:
            raise ValueError("stop_timeout_s must not be negative")


def _networks(allowed_peers: Iterable[str]) -> tuple[Network, ...]:
    """Each entry an IP address or a CIDR network; a bad entry raises ValueError naming it."""
    networks = []
    for entry in allowed_peers:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"allowed_peers: {entry!r} is neither an IP address nor a CIDR network") from exc
    return tuple(networks)


def peer_allowed(host: str, networks: Sequence[Network]) -> bool:
    """True if ``networks`` is empty or holds ``host`` (an IPv4-mapped IPv6 address counts as IPv4)."""
    if not networks:
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class _Closed(Exception):
    """Internal: the connection ends here (the reason is already logged)."""


class _Connection:
    def __init__(self, peer: PeerInfo, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peer = peer
        self.reader = reader
        self.writer = writer
        self.busy = False  # a handler or an answer in flight: close() lets it finish
        self.task = asyncio.current_task()


class MllpListener:
    """An MLLP server on ``host``:``port`` (0: any free port, see :attr:`port`)."""

    def __init__(self, handler: Handler, reject: Reject, *, host: str = "127.0.0.1", port: int = 0,
                 limits: ListenerLimits | None = None, ssl: ssl_module.SSLContext | None = None,
                 allowed_peers: Iterable[str] = (), reuse_port: bool = False) -> None:
        self.handler = handler
        # SO_REUSEPORT: several processes (``serve --processes N``) each listen on the port and the
        # kernel spreads connections among them; a holder without the option still makes the bind fail.
        self.reuse_port = reuse_port
        self.reject = reject
        self.host = host
        self.requested_port = port
        self.limits = limits or ListenerLimits()
        self.ssl = ssl
        self.allowed_peers = _networks(allowed_peers)
        self._server: asyncio.Server | None = None
        self._connections: dict[int, _Connection] = {}
        self._ids = itertools.count(1)
        self._stopping = False
        self.accepted = 0
        self.refused = 0  # not in allowed_peers or over max_connections (failed TLS handshakes: asyncio's)
        self.handled = 0
        self.rejected = 0  # answered by reject(): oversized, or the handler failed

    async def __aenter__(self) -> MllpListener:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The bound port (useful after asking for port 0)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the listener is not started")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def active_connections(self) -> int:
        return len(self._connections)

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the listener is already started")
        self._stopping = False
        self._server = await asyncio.start_server(
            self._serve, self.host, self.requested_port, limit=_READ_CHUNK, ssl=self.ssl,
            reuse_port=self.reuse_port or None,
            ssl_handshake_timeout=self.limits.tls_handshake_timeout_s if self.ssl is not None else None)
        logger.info("mllp listener on %s:%s%s (max %d connections)", self.host, self.port,
                    " with TLS" if self.ssl is not None else "", self.limits.max_connections)

    async def close(self) -> None:
        """Stop accepting, close idle connections, let in-flight handlers answer (within
        ``stop_timeout_s``; then they are cancelled and their connections closed)."""
        if self._server is None:
            return
        server, self._server = self._server, None
        self._stopping = True
        server.close()
        for connection in list(self._connections.values()):
            if not connection.busy and connection.task is not None:
                connection.task.cancel()
        tasks = [c.task for c in self._connections.values() if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.limits.stop_timeout_s)
            for task in pending:
                task.cancel()
            if pending:
                logger.warning("mllp listener: %d handler(s) still running after %gs were cancelled",
                               len(pending), self.limits.stop_timeout_s)
                await asyncio.wait(pending, timeout=_CLOSE_TIMEOUT_S)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                await server.wait_closed()
        logger.info("mllp listener stopped")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername") or ("?", 0)
        peer = PeerInfo(str(address[0]), int(address[1]), self.ssl is not None, next(self._ids))
        if not self._admit(peer):
            self.refused += 1
            await _close(writer)
            return
        connection = _Connection(peer, reader, writer)
        self._connections[peer.connection_id] = connection
        self.accepted += 1
        try:
            _set_nodelay(writer)
            logger.info("mllp connection %d from %s:%d", peer.connection_id, peer.host, peer.port)
            await self._converse(connection)
        except _Closed:
            pass
        except asyncio.CancelledError:
            if not self._stopping:
                raise
        except (OSError, ssl_module.SSLError) as exc:
            logger.info("mllp connection %d lost: %s", peer.connection_id, type(exc).__name__)
        finally:
            del self._connections[peer.connection_id]
            await _close(writer)
            logger.info("mllp connection %d closed", peer.connection_id)

    def _admit(self, peer: PeerInfo) -> bool:
        if self._stopping:
            return False
        if not peer_allowed(peer.host, self.allowed_peers):
            logger.warning("mllp listener refused %s:%d: not in allowed_peers", peer.host, peer.port)
            return False
        if len(self._connections) >= self.limits.max_connections:
            logger.warning("mllp listener refused %s:%d: %d connections open (max_connections)",
                           peer.host, peer.port, len(self._connections))
            return False
        return True

    async def _converse(self, connection: _Connection) -> None:
        """Read, hand over and answer messages one at a time until the peer leaves or a limit hits."""
        frames = FrameReader(self.limits.max_message_bytes)
        loop = asyncio.get_running_loop()
        message_started: float | None = None
        owed: list[bytes] = []  # reject answers for oversized messages, sent once they have passed
        conn_id = connection.peer.connection_id
        while not self._stopping:
            try:
                message = frames.next_message()
            except MessageTooLarge as exc:
                self.rejected += 1
                logger.warning("mllp connection %d: message over %d bytes dropped", conn_id,
                               self.limits.max_message_bytes)
                answer = self._reject_answer("message too large", exc.prefix, conn_id)
                owed += [answer] if answer is not None else []
                continue
            except FramingError as exc:
                logger.warning("mllp connection %d: framing broken (%s); closing", conn_id, exc)
                raise _Closed from exc
            if owed and not frames.skipping:
                connection.busy = True
                await self._write(connection, owed)
                connection.busy, owed = False, []
            if message is not None:
                message_started = None
                await self._answer(connection, message)
                continue
            if frames.idle:
                message_started = None
            elif message_started is None:
                message_started = loop.time()
            data = await self._read(connection, frames.idle, message_started, loop.time())
            frames.feed(data)

    async def _read(self, connection: _Connection, idle: bool, message_started: float | None,
                    now: float) -> bytes:
        timeout = self.limits.read_timeout_s
        if message_started is not None:
            timeout = min(timeout, message_started + self.limits.message_timeout_s - now)
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                data = await connection.reader.read(_READ_CHUNK)
        except TimeoutError as exc:
            what = "idle" if idle else "stalled mid-message"
            logger.info("mllp connection %d %s past its read deadline; closing",
                        connection.peer.connection_id, what)
            raise _Closed from exc
        if not data:
            raise _Closed
        return data

    async def _answer(self, connection: _Connection, message: bytes) -> None:
        """Await the handler, then write its answer; a failure answers ``reject`` and closes."""
        connection.busy = True
        conn_id = connection.peer.connection_id
        try:
            answer = await self.handler(message, connection.peer)
            frames = _frames(answer)
        except Exception as exc:  # noqa: BLE001 - any handler failure: answer, close, keep serving others
            self.rejected += 1
            logger.error("mllp connection %d: handler failed (%s); answered with reject, closing",
                         conn_id, type(exc).__name__)
            owed = self._reject_answer("internal error", message[:_PREFIX_KEPT], conn_id)
            if owed is not None:
                await self._write(connection, [owed])
            raise _Closed from None
        self.handled += 1
        await self._write(connection, frames)
        connection.busy = False

    def _reject_answer(self, reason: str, raw_prefix: bytes, conn_id: int) -> bytes | None:
        try:
            return frame(self.reject(reason, raw_prefix))
        except Exception as exc:  # noqa: BLE001 - no answer possible: the caller carries on or closes
            logger.error("mllp connection %d: reject(%r) failed (%s); nothing sent", conn_id, reason,
                         type(exc).__name__)
            return None

    async def _write(self, connection: _Connection, frames: Sequence[bytes]) -> None:
        try:
            async with asyncio.timeout(self.limits.write_timeout_s):
                for data in frames:
                    connection.writer.write(data)  # one framed message, one write
                    await connection.writer.drain()
        except TimeoutError as exc:
            logger.info("mllp connection %d: peer did not take the answer within %gs; closing",
                        connection.peer.connection_id, self.limits.write_timeout_s)
            raise _Closed from exc


def _frames(answer: Answer) -> list[bytes]:
    """The handler's answer framed, one frame per message; empty messages are not sent."""
    if isinstance(answer, bytes | bytearray):
        answer = [bytes(answer)]
    if isinstance(answer, str) or not all(isinstance(a, bytes | bytearray) for a in answer):
        raise TypeError("the handler must return bytes or a sequence of bytes")
    return [frame(bytes(a)) for a in answer if a]


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, ssl_module.SSLError, TimeoutError, ConnectionError):
        async with asyncio.timeout(_CLOSE_TIMEOUT_S):  # a peer that stopped reading must not hold us
            await writer.wait_closed()
