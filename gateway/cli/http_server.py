"""uvicorn's options for ``cgt-gateway serve``, and the read deadlines uvicorn lacks.

uvicorn bounds idle keep-alive connections (``timeout_keep_alive``), connections and requests in
flight (``limit_concurrency``: 503 beyond it) and, with h11 only, the size of a request head
(``h11_max_incomplete_event_size``).  It has no deadline for a client that connects and sends half
a request head, or a head and then part of its body, and stalls (slowloris): such a connection is
held forever.  :func:`protocol_class` gives uvicorn's own HTTP protocol (httptools or h11, as
``server_http`` chooses) subclassed with two per-connection deadlines, checked by one timer:

* **headers**: a request's head must be complete within ``server_header_timeout_s`` of its first
  byte (of the connection, for the first request), and within ``server_max_header_bytes``;
* **body**: its body must be complete within ``server_body_timeout_s`` of its head.

A connection past a deadline is answered ``408 Request Timeout`` (unless its response has started)
and closed; a head too large is answered ``431``.  Other connections are unaffected: the timer is the
connection's own, on the event loop, with no task or thread per connection.

The protocol classes are module-level (importable by name) and their deadlines are keyword arguments
bound by :func:`functools.partial`: so what :func:`protocol_class` returns pickles, and ``serve
--processes N`` hands it to the child processes uvicorn spawns inside its configuration.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.config import Settings

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed (uvicorn without [standard])
    HttpToolsProtocol = None  # type: ignore[assignment,misc]

__all__ = ["ReadDeadlines", "GatewayH11Protocol", "GatewayHttpToolsProtocol", "protocol_class",
           "uvicorn_options"]

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class ReadDeadlines:
    """``server_header_timeout_s``, ``server_body_timeout_s`` and ``server_max_header_bytes``."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 16 * 1024


class _ReadDeadlines:
    """Mixed in before uvicorn's ``H11Protocol`` or ``HttpToolsProtocol`` (which provide ``transport``,
    ``cycle``, ``loop`` and the protocol callbacks)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 16 * 1024

    transport: asyncio.Transport
    cycle: Any
    loop: asyncio.AbstractEventLoop

    def __init__(self, *args: Any, read_deadlines: ReadDeadlines | None = None, **kwargs: Any) -> None:
        if read_deadlines is not None:
            self.header_timeout_s = read_deadlines.header_timeout_s
            self.body_timeout_s = read_deadlines.body_timeout_s
            self.max_header_bytes = read_deadlines.max_header_bytes
        super().__init__(*args, **kwargs)

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None  # "headers" or "body" while a deadline runs
        self._head_bytes = 0
        self._watched: Any = None  # the request cycle whose head was seen last
        super().connection_made(transport)  # type: ignore[misc]
        self._arm("headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._phase is None and (self.cycle is None or self.cycle.response_complete):
            self._arm("headers")  # the first bytes of the next request on a kept-alive connection
        if self._phase == "headers":
            self._head_bytes += len(data)
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            self._disarm()
            return
        cycle = self.cycle
        if cycle is not None and cycle is not self._watched:  # a request's head is complete
            self._watched = cycle
            if cycle.more_body and not cycle.response_complete:
                self._arm("body")
            else:
                self._disarm()
        elif self._phase == "body" and (cycle is None or not cycle.more_body):
            self._disarm()
        elif self._phase == "headers" and self._head_bytes > self.max_header_bytes:
            self._refuse(431, f"The request head exceeds {self.max_header_bytes} bytes.")

    def _arm(self, phase: str) -> None:
        self._disarm()
        self._phase = phase
        self._head_bytes = 0
        timeout = self.header_timeout_s if phase == "headers" else self.body_timeout_s
        self._deadline = self.loop.call_later(timeout, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, None

    def _expired(self) -> None:
        phase = self._phase
        self._deadline, self._phase = None, None
        if self.transport.is_closing():
            return
        what = "request head" if phase == "headers" else "request body"
        self._refuse(408, f"The {what} did not arrive in time.", phase)

    def _refuse(self, status: int, message: str, phase: str | None = "headers") -> None:
        """Answer ``status`` unless this request's response has started, then close the connection.
        While a head is awaited, ``cycle`` is the previous request's (complete) or None."""
        self._disarm()
        cycle = self.cycle
        # awaiting a body: this request's response may have started (or even ended: the app answered
        # without reading the body), and then nothing more may be written on the connection
        started = phase == "body" and cycle is not None and cycle.response_started
        if not started:
            body = message.encode("ascii")
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
                                 b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                                 % (status, _REASONS[status], len(body), body))
        if cycle is not None and not cycle.response_complete:
            cycle.keep_alive = False
        self.transport.close()


class GatewayH11Protocol(_ReadDeadlines, H11Protocol):
    """uvicorn's h11 protocol with the read deadlines."""


class GatewayHttpToolsProtocol(_ReadDeadlines, HttpToolsProtocol or H11Protocol):  # type: ignore[misc]
    """uvicorn's httptools protocol with the read deadlines (not used when httptools is missing)."""


def _base_protocol(http: str) -> type[asyncio.Protocol]:
    if http in ("auto", "httptools"):
        if HttpToolsProtocol is not None:
            return GatewayHttpToolsProtocol
        if http == "httptools":
            raise ImportError("server_http is httptools but httptools is not installed")
    return GatewayH11Protocol


def protocol_class(settings: Settings) -> Any:
    """uvicorn's HTTP protocol chosen by ``server_http``, with the read deadlines of ``settings``: a
    picklable callable taking uvicorn's protocol arguments (uvicorn calls ``http(config=..., ...)``)."""
    return functools.partial(_base_protocol(settings.server_http), read_deadlines=ReadDeadlines(
        header_timeout_s=settings.server_header_timeout_s,
        body_timeout_s=settings.server_body_timeout_s,
        max_header_bytes=settings.server_max_header_bytes,
    ))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` besides the app, host and port."""
    return {
        "loop": settings.server_loop,
        "http": protocol_class(settings),
        "limit_concurrency": settings.server_limit_concurrency,
        "timeout_keep_alive": settings.server_keep_alive_timeout_s,
        "h11_max_incomplete_event_size": settings.server_max_header_bytes,
    }
