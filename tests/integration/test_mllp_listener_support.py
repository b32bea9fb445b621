"""Peers and a fake service for the MLLP listener tests: the site's handler and reject, raw socket peers."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from adapters.mllp.framing import FrameReader
from adapters.mllp.server import ListenerLimits, MllpListener, PeerInfo
from mappings.er7.ack import build_ack

AR_FRAME = b"MSH|^~\\&|CGT_GW|CGT|||20261202000000||ACK|REJ1|P|2.5.1\rMSA|AR|UNKNOWN\r"
SECRET = "DOE^JANE"  # stands for PHI: must never reach a log


def message(control_id: str, *, size: int = 0, enhanced: bool = False) -> bytes:
    pad = "X" * size
    tail = "|||AL|AL" if enhanced else ""
    return (f"MSH|^~\\&|SITE_EHR|SITE_A|CGT_GW|CGT|20261202080000||ORM^O01|{control_id}|P|2.5.1{tail}\r"
            f"PID|1||MRN1^^^SITE_A^MR||{SECRET}\rNTE|1||{pad}\r").encode()


def control_id(raw: bytes) -> str:
    return raw.split(b"\r", 1)[0].decode().split("|")[9]


class Site:
    """The handler and reject the service would pass, recording what they saw."""

    def __init__(self) -> None:
        self.received: list[tuple[str, PeerInfo]] = []
        self.rejects: list[tuple[str, bytes]] = []
        self.gate: asyncio.Event | None = None  # set: handlers wait for it
        self.in_handler = 0
        self.fail_with: Exception | None = None

    async def handle(self, raw: bytes, peer: PeerInfo) -> bytes:
        self.received.append((control_id(raw), peer))
        self.in_handler += 1
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            return build_ack(raw.decode(), "AA").encode()
        finally:
            self.in_handler -= 1

    def reject(self, reason: str, raw_prefix: bytes) -> bytes:
        self.rejects.append((reason, raw_prefix))
        return AR_FRAME

    @property
    def ids(self) -> list[str]:
        return [cid for cid, _ in self.received]


_peers: list[Peer] = []


def run(scenario: Callable[[], Awaitable[None]], loop: str = "asyncio") -> None:
    """Run ``scenario`` on asyncio's loop or on uvloop (which ``serve`` runs on), closing test peers."""
    async def with_peers_closed() -> None:
        try:
            await asyncio.wait_for(scenario(), timeout=20)
        finally:
            for peer in _peers:
                peer.close()
                with contextlib.suppress(OSError):
                    await peer.writer.wait_closed()
            _peers.clear()

    factory = pytest.importorskip("uvloop").new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(with_peers_closed())


LOOPS = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


def listener(site: Site, **limits: Any) -> MllpListener:
    options = {k: limits.pop(k) for k in ("ssl", "allowed_peers") if k in limits}
    return MllpListener(site.handle, site.reject, limits=ListenerLimits(**limits), **options)


class Peer:
    """A raw socket site engine: writes whatever bytes it is given, reads framed answers."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer, self.frames = reader, writer, FrameReader()

    @classmethod
    async def connect(cls, port: int, **kw: Any) -> Peer:
        peer = cls(*await asyncio.open_connection("127.0.0.1", port, **kw))
        _peers.append(peer)
        return peer

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, timeout: float = 5.0) -> bytes:
        async with asyncio.timeout(timeout):
            while (raw := self.frames.next_message()) is None:
                data = await self.reader.read(65536)
                if not data:
                    raise EOFError("listener closed the connection")
                self.frames.feed(data)
        return raw

    async def closed_by_listener(self, timeout: float = 5.0) -> bool:
        """True once the listener closes (EOF or reset) with no further answer."""
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(65536) == b""
        except OSError:  # reset, or a TLS alert / unclean TLS close
            return True

    def close(self) -> None:
        self.writer.close()




def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1: with ``cryptography`` if installed, else openssl."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    try:
        from cryptography import x509  # noqa: PLC0415 - optional
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import NameOID  # noqa: PLC0415
    except ImportError:
        if shutil.which("openssl") is None:
            pytest.skip("neither the cryptography package nor the openssl command is available")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                  critical=False)
                   .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key


