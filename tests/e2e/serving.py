"""A real ``cgt-gateway serve`` on a free loopback port, on a fresh SQLite database, for e2e tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

__all__ = ["Served", "free_port", "serve"]

CLI = Path(sys.executable).parent / "cgt-gateway"


@dataclass(frozen=True)
class Served:
    base: str  # http://127.0.0.1:<port>
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(directory: Path, *args: str, database: str = "e2e.db", inbound: bool = False,
          env_extra: dict[str, str] | None = None) -> Iterator[Served]:
    """``cgt-gateway serve --port <free> *args`` in ``directory`` (the demo configuration), ready once
    ``/readyz`` answers 200; terminated afterwards.  Its output goes to ``directory/server.log``.
    The sites' inbound MLLP listeners are off (the demo's site-a would bind 2575) unless ``inbound``;
    ``env_extra`` adds environment variables (e.g. ``CGT_GATEWAY_CONFIG``)."""
    port = free_port()
    env = {**os.environ, "CGT_GATEWAY_DATABASE_URL": f"sqlite:///{directory / database}"}
    env.pop("CGT_GATEWAY_CONFIG", None)
    env["CGT_GATEWAY_INBOUND_MLLP_ENABLED"] = "true" if inbound else "false"
    env.update(env_extra or {})
    log_path = directory / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([str(CLI), "serve", "--port", str(port), *args],
                                   cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(log_path.read_text())
                time.sleep(0.2)
            yield Served(base, process, log_path, env)
        finally:
            process.terminate()
            process.wait(timeout=10)
