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

__all__ = ["Served", "free_port", "serve", "without_delivery"]

CLI = Path(sys.executable).parent / "cgt-gateway"


@dataclass(frozen=True)
class Served:
    base: str  # http://127.0.0.1:<port>
    process: subprocess.Popen[bytes]
    log_path: Path
    env: dict[str, str]


def without_delivery(profile_text: str) -> str:
    """A profile's YAML without its top-level ``delivery:`` section (and the comment lines just above
    it): the demo site-b profile delivers to the demo peer (127.0.0.1:2576); a test that delivers
    elsewhere, or must not deliver, takes it out before adding its own."""
    out: list[str] = []
    skipping = False
    for line in profile_text.splitlines(keepends=True):
        if line.startswith("delivery:"):
            skipping = True
            while out and (out[-1].startswith("#") or not out[-1].strip()):
                out.pop()
            continue
        if skipping and (line.startswith((" ", "\t", "#")) or not line.strip()):
            continue
        skipping = False
        out.append(line)
    return "".join(out)


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
