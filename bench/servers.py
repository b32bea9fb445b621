"""Servers under test, each a real uvicorn in a subprocess on a loopback socket; peak RSS from /proc."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

__all__ = [
    "SERVER_LOOP",
    "SERVER_HTTP",
    "server_implementation",
    "Server",
    "free_port",
    "gateway_server",
    "baseline_server",
    "peak_rss_mb",
    "descendants",
    "database_urls",
    "reset_postgres",
    "pg_available",
]

ROOT = Path(__file__).resolve().parent.parent
# The gateway and every baseline run on the same uvicorn event loop and HTTP parser (``auto``:
# uvloop and httptools when installed, as ``cgt-gateway serve`` picks them by default).
SERVER_LOOP = "auto"
SERVER_HTTP = "auto"


def server_implementation() -> dict[str, str]:
    """What ``auto`` resolves to here (uvicorn's own rule: the fast one when it imports)."""
    from importlib.util import find_spec

    loop = SERVER_LOOP if SERVER_LOOP != "auto" else ("uvloop" if find_spec("uvloop") else "asyncio")
    http = SERVER_HTTP if SERVER_HTTP != "auto" else ("httptools" if find_spec("httptools") else "h11")
    return {"loop": loop, "http": http}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (the peak resident set) of a live process, in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from ``/proc/<pid>/task/*/children``)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                text = Path(f"/proc/{current}/task/{task}/children").read_text()
            except OSError:
                continue
            for child in text.split():
                found.append(int(child))
                stack.append(int(child))
    return found


@dataclass
class Server:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    rss_samples: list[float] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def peak_rss_mb(self) -> float | None:
        return peak_rss_mb(self.process.pid)


def _wait_ready(server: Server, path: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.kind} server exited: {server.log_path.read_text()[-2000:]}")
        try:
            if httpx.get(server.base_url + path, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{server.kind} server not ready after {timeout_s}s")


@contextmanager
def _running(
    kind: str, cmd: list[str], env: dict[str, str], port: int, workdir: Path, ready_path: str
) -> Iterator[Server]:
    log_path = workdir / f"{kind}-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
    server = Server(kind, port, process, log_path)
    try:
        _wait_ready(server, ready_path)
        yield server
    finally:
        server.rss_samples.append(server.peak_rss_mb() or 0.0)
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def gateway_server(
    database_url: str, workdir: Path, *, config: Path | None = None, worker: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    """``cgt-gateway serve`` (migrates, then uvicorn, with its in-process delivery worker unless
    ``worker`` is false: ``--no-worker``) on the demo configuration (or ``config``); ``env``: more
    ``CGT_GATEWAY_*`` settings."""
    port = free_port()
    script = Path(sys.executable).parent / "cgt-gateway"
    fallback = [sys.executable, "-c", "from gateway.cli.main import app; app()"]
    cmd = [str(script)] if script.exists() else fallback
    env = {
        **(env or {}),
        "CGT_GATEWAY_DATABASE_URL": database_url,
        "CGT_GATEWAY_LOG_LEVEL": "WARNING",
        "CGT_GATEWAY_PORT": str(port),
        "CGT_GATEWAY_SERVER_LOOP": SERVER_LOOP,
        "CGT_GATEWAY_SERVER_HTTP": SERVER_HTTP,
    }
    if config is not None:
        env["CGT_GATEWAY_CONFIG"] = str(config)
    args = [*cmd, "serve"] if worker else [*cmd, "serve", "--no-worker"]
    with _running("gateway", args, env, port, workdir, "/healthz") as server:
        yield server


@contextmanager
def baseline_server(database_url: str, workdir: Path) -> Iterator[Server]:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.baseline_app", "--database-url", database_url, "--port", str(port),
           "--loop", SERVER_LOOP, "--http", SERVER_HTTP]
    with _running("baseline", cmd, {}, port, workdir, "/healthz") as server:
        yield server


def _create_database(url: str) -> None:
    """Create the benchmark's database when the server answers but the database does not exist yet."""
    import sqlalchemy as sa

    from gateway.store.db import make_engine

    target = sa.make_url(url.replace("postgresql://", "postgresql+psycopg://", 1))
    name = target.database
    if not name or not name.replace("_", "").isalnum():
        return
    admin = make_engine(
        target.set(database="postgres").render_as_string(hide_password=False),
        pool_pre_ping=False,
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            query = sa.text("SELECT 1 FROM pg_database WHERE datname = :n")
            exists = conn.execute(query, {"n": name}).first()
            if exists is None:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()


def pg_available(url: str) -> str | None:
    """None when PostgreSQL at ``url`` answers (its database is created if missing), else why not."""
    import sqlalchemy as sa

    from gateway.store.db import make_engine

    try:
        _create_database(url)
    except Exception:  # noqa: BLE001, S110 - the connection attempt below says why
        pass
    try:
        engine = make_engine(url, pool_pre_ping=False)
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means: skip the PostgreSQL figures
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def reset_postgres(url: str) -> None:
    """Drop and recreate schema ``public`` of the benchmark database (it is ours alone)."""
    import sqlalchemy as sa

    from gateway.store.db import make_engine

    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA IF EXISTS public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


def database_urls(workdir: Path, pg_url: str | None, name: str) -> dict[str, str]:
    """A fresh SQLite file, and the PostgreSQL database when given."""
    urls = {"sqlite": f"sqlite:///{workdir / (name + '.db')}"}
    if pg_url:
        urls["postgresql"] = pg_url
    return urls
