"""``cgt-gateway demo-peer``: a small demo site interface engine, an MLLP sink on 127.0.0.1 that ACKs.

Built on the project's own :class:`~adapters.mllp.server.MllpListener` (framing, deadlines, one write
per answer) and :func:`~mappings.er7.ack.build_ack` (the ACK in the message's own version and
delimiters).  Every message is answered ``AA``, except the control ids (MSH-10) it was told to
refuse:

* ``--ae CONTROL_ID`` (repeatable): answer ``AE``: the gateway dead-letters the message (an alert is
  raised and the queue moves on);
* ``--ar CONTROL_ID`` (repeatable): answer ``AR``: the gateway retries it with backoff, holding the queue;
* a control file (``--control-file``, re-read whenever it changes, at most 64 KiB), one rule a line:
  ``AE <control id>`` or ``AR <control id>``; ``*`` as the control id matches every message; blank
  lines and ``#`` comments are ignored.  Removing the file (or a line) returns to ``AA``.

A message in enhanced mode (MSH-15/16 valued) gets the commit ACK instead (``CA``/``CE``/``CR``),
which is what the gateway's sender waits for unless the profile sets ``wait_for_application_ack``.
It logs control ids and ACK codes only, never message content.  It always binds 127.0.0.1.

``cgt-gateway serve --with-demo-peer`` (what ``make run`` does) runs one on its own thread, on the
``demo_peer_port`` setting (2576, the port of the demo site-b profile's ``delivery.mllp``), with
the control file ``demo_peer_control_file`` (``var/demo-peer.ctl``), and stops it with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from adapters.mllp.server import ListenerLimits, MllpListener, PeerInfo
from gateway.config import Settings
from mappings.er7.ack import build_ack, read_header

__all__ = ["ControlRules", "DemoPeer", "DemoPeerThread", "demo_peer_command", "parse_control_file",
           "start_demo_peer_thread", "DEMO_PEER_HOST"]

logger = logging.getLogger(__name__)

DEMO_PEER_HOST = "127.0.0.1"
CONTROL_FILE_MAX_BYTES = 64 * 1024
_COMMIT_FOR = {"AA": "CA", "AE": "CE", "AR": "CR"}
_TEXT = {"AE": "demo peer: told to answer AE for this control id",
         "AR": "demo peer: told to answer AR for this control id"}


@dataclass(frozen=True)
class ControlRules:
    """Control ids to answer AE or AR (``*`` matches every message)."""

    ae: frozenset[str] = frozenset()
    ar: frozenset[str] = frozenset()

    def code_for(self, control_id: str) -> str:
        if control_id in self.ae or "*" in self.ae:
            return "AE"
        if control_id in self.ar or "*" in self.ar:
            return "AR"
        return "AA"

    def merged(self, other: ControlRules) -> ControlRules:
        return ControlRules(self.ae | other.ae, self.ar | other.ar)


def parse_control_file(text: str, source: str = "control file") -> ControlRules:
    """``AE <id>`` / ``AR <id>`` lines; raises ValueError naming the line of a bad one."""
    ae: set[str] = set()
    ar: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0].upper() not in ("AE", "AR") or len(parts[1]) > 199:
            raise ValueError(f"{source}:{number}: expected 'AE <control id>' or 'AR <control id>'")
        (ae if parts[0].upper() == "AE" else ar).add(parts[1])
    return ControlRules(frozenset(ae), frozenset(ar))


def _loggable(control_id: str) -> str:
    """A control id as logged: printable ASCII only, at most 40 characters."""
    return "".join(c if c.isascii() and c.isprintable() else "?" for c in control_id[:40])


class DemoPeer:
    """The sink: ``await peer.start()``, ``peer.port``, ``await peer.close()``; ``answered`` counts codes."""

    def __init__(self, *, port: int = 0, ae: Iterable[str] = (), ar: Iterable[str] = (),
                 control_file: Path | None = None, limits: ListenerLimits | None = None) -> None:
        self.rules = ControlRules(frozenset(ae), frozenset(ar))
        self.control_file = control_file
        self.answered: Counter[str] = Counter()
        self.received: list[str] = []  # control ids, in arrival order (the last 1000)
        self._file_rules = ControlRules()
        self._file_stamp: tuple[float, int] | None = None
        self.listener = MllpListener(self._handle, self._reject, host=DEMO_PEER_HOST, port=port,
                                     limits=limits or ListenerLimits(read_timeout_s=600.0))

    @property
    def port(self) -> int:
        return self.listener.port

    async def start(self) -> None:
        await self.listener.start()
        logger.info("demo peer: MLLP sink on %s:%d", DEMO_PEER_HOST, self.port)

    async def close(self) -> None:
        await self.listener.close()

    def current_rules(self) -> ControlRules:
        """The command-line rules plus the control file's (re-read when its mtime or size changes)."""
        path = self.control_file
        if path is None:
            return self.rules
        try:
            stat = path.stat()
        except OSError:
            self._file_rules, self._file_stamp = ControlRules(), None
            return self.rules
        stamp = (stat.st_mtime, stat.st_size)
        if stamp != self._file_stamp:
            self._file_stamp = stamp
            try:
                if stat.st_size > CONTROL_FILE_MAX_BYTES:
                    raise ValueError(f"{path}: over {CONTROL_FILE_MAX_BYTES} bytes")
                self._file_rules = parse_control_file(path.read_text(encoding="utf-8"), str(path))
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                logger.warning("demo peer: control file ignored: %s", exc)
                self._file_rules = ControlRules()
        return self.rules.merged(self._file_rules)

    async def _handle(self, message: bytes, peer: PeerInfo) -> bytes:
        er7 = message.decode("utf-8", errors="surrogateescape")
        header = read_header(er7)
        code = self.current_rules().code_for(header.control_id)
        if header.enhanced_mode:
            code = _COMMIT_FOR[code]
        ack = build_ack(er7, code, text=_TEXT.get(code) or _TEXT.get(code.replace("C", "A", 1)))
        self.answered[code] += 1
        self.received = [*self.received[-999:], header.control_id]
        logger.info("demo peer: %s %s -> %s", header.message_code + "^" + header.trigger_event
                    if header.trigger_event else header.message_code, _loggable(header.control_id), code)
        return ack.encode("utf-8", errors="surrogateescape")

    def _reject(self, reason: str, raw_prefix: bytes) -> bytes:
        """An AR for a message we cannot take (too large, or unreadable): built from its MSH."""
        er7 = raw_prefix.decode("utf-8", errors="surrogateescape")
        return build_ack(er7, "AR", text=f"demo peer: {reason}").encode("utf-8", errors="surrogateescape")


class DemoPeerThread:
    """A :class:`DemoPeer` on its own thread and event loop (``serve --with-demo-peer``)."""

    def __init__(self, peer: DemoPeer) -> None:
        self.peer = peer
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="demo-peer", daemon=True)

    def start(self, timeout_s: float = 10.0) -> None:
        """Start and wait until bound; raises the bind error (e.g. the port is in use)."""
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("the demo peer did not start in time")
        if self._error is not None:
            raise self._error

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.peer.start()
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.peer.close()


_PORT_HELP = "Port on 127.0.0.1 (default: the demo_peer_port setting, 2576: the demo site-b profile's)"
_AE_HELP = "Answer AE for this MSH-10 ('*': every message); repeatable"
_AR_HELP = "Answer AR for this MSH-10 ('*': every message); repeatable"
_FILE_HELP = "File of 'AE <control id>' / 'AR <control id>' lines, re-read when it changes"


def demo_peer_command(
    port: Annotated[int | None, typer.Option(help=_PORT_HELP)] = None,
    ae: Annotated[list[str] | None, typer.Option("--ae", metavar="CONTROL_ID", help=_AE_HELP)] = None,
    ar: Annotated[list[str] | None, typer.Option("--ar", metavar="CONTROL_ID", help=_AR_HELP)] = None,
    control_file: Annotated[Path | None, typer.Option(help=_FILE_HELP)] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML configuration file")] = None,
) -> None:
    """Run the demo site interface engine: an MLLP sink on 127.0.0.1 that ACKs every message AA
    (AE/AR for the control ids it is told), logging control ids only."""
    from pydantic import ValidationError

    from gateway.config import load_settings
    from gateway.logging_config import configure_logging

    try:
        settings = load_settings(config)
    except (ValidationError, OSError, ValueError) as exc:
        typer.echo(f"invalid configuration: {exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level)
    port = port if port is not None else settings.demo_peer_port
    peer = DemoPeer(port=port, ae=ae or (), ar=ar or (), control_file=control_file)

    async def main() -> None:
        try:
            await peer.start()
        except OSError as exc:
            typer.echo(f"cannot start the demo peer on {DEMO_PEER_HOST}:{port}: {exc.strerror or exc}",
                       err=True)
            raise typer.Exit(1) from None
        typer.echo(f"demo peer: MLLP on {DEMO_PEER_HOST}:{peer.port} (Ctrl-C stops)", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await peer.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


def start_demo_peer_thread(settings: Settings) -> DemoPeerThread:
    """``serve --with-demo-peer``: the peer on ``settings.demo_peer_port``, started (exit 1 if it
    cannot bind)."""
    peer = DemoPeer(port=settings.demo_peer_port, control_file=settings.demo_peer_control_file)
    thread = DemoPeerThread(peer)
    try:
        thread.start()
    except OSError as exc:
        typer.echo(f"cannot start the demo peer on {DEMO_PEER_HOST}:{settings.demo_peer_port}: "
                   f"{exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    return thread
