"""Helpers for the scale-out tests (issue 17): real ``cgt-gateway serve`` processes on one PostgreSQL.

A :class:`Cluster` is what several hosts behind a load balancer are, on one machine: ``serve
--processes 3`` on one port (three server processes), a single-process ``serve`` on another port (a
second "host"), and two standalone ``cgt-gateway worker`` processes, all on the test database, the
sites delivering over MLLP to python-hl7 peers.  Every response carries ``X-Cgt-Process`` (the
test-only ``serve_process_header``), so a test sees which process answered.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ACME, PG_URL_VAR, isbt_coi
from tests.e2e.serving import CLI, free_port
from tests.integration.test_delivery_support import ROOT, start_worker_process

JOURNEY = json.loads((ROOT / "fixtures" / "events" / "journey-autologous.json").read_text(encoding="utf-8"))


def pg_url() -> str:
    """The PostgreSQL test database's URL, or skip (these tests need several processes on one database)."""
    url = os.environ.get(PG_URL_VAR)
    if not url:
        pytest.skip(f"{PG_URL_VAR} is not set: several server processes need PostgreSQL")
    return url


def journey(order_id: str, n: int, site_id: str = "site-a", events: int = 8) -> tuple[dict, list[dict]]:
    """The demo journey as order ``order_id`` (its own CoI, patient, DIN and lots), its first ``events``."""
    coi = isbt_coi(n)
    order = {**JOURNEY["order"], "order_id": order_id, "site_id": site_id, "coi": coi,
             "patient": {**JOURNEY["order"]["patient"], "mrn": f"MRN-S{n}"}}
    bodies = []
    for event in JOURNEY["events"][:events]:
        data = dict(event["data"])
        if "din" in data:
            data["din"] = f"A9999{26000000 + n:08d}"
        if "lot" in data:
            data["lot"] = f"{data['lot']}-{order_id}"
        bodies.append({**event, "event_id": f"{order_id}-{event['event_id']}", "coi": coi, "data": data})
    return order, bodies


def post(base: str, path: str, body: dict, *, timeout: float = 30.0) -> httpx.Response:
    """One POST on a connection of its own (so the kernel may hand it to any process on the port)."""
    return httpx.post(base + path, json=body, headers={**ACME, "Connection": "close"}, timeout=timeout)


@dataclass
class Server:
    """A ``cgt-gateway serve`` subprocess."""

    base: str
    process: subprocess.Popen[bytes]
    log: Path
    seen: set[str] = field(default_factory=set)  # X-Cgt-Process values it answered with

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
            raise AssertionError(f"serve did not stop within {timeout} s:\n{self.log.read_text()[-3000:]}") \
                from None

    def processes_answering(self, want: int, timeout_s: float = 240.0) -> set[str]:
        """Ask ``/healthz`` on fresh connections until ``want`` distinct processes answered."""
        deadline = time.monotonic() + timeout_s
        while len(self.seen) < want:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"only {self.seen} answered:\n{self.log.read_text()[-3000:]}"
            try:
                answer = httpx.get(self.base + "/healthz", headers={"Connection": "close"}, timeout=5)
                self.seen.add(answer.headers["x-cgt-process"])
            except httpx.TransportError:
                time.sleep(0.2)
        return set(self.seen)


def start_serve(config: Path, log: Path, *args: str, env_extra: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {**os.environ, "CGT_GATEWAY_SERVE_PROCESS_HEADER": "true",
           "CGT_GATEWAY_INBOUND_MLLP_ENABLED": "false", "CGT_GATEWAY_ALERTS_ENABLED": "false",
           **(env_extra or {})}
    env.pop("CGT_GATEWAY_DATABASE_URL", None)
    with log.open("ab") as handle:
        process = subprocess.Popen([str(CLI), "serve", "--config", str(config), "--port", str(port), *args],
                                   cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
    return Server(f"http://127.0.0.1:{port}", process, log)


def wait_ready(server: Server, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(server.base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert server.process.poll() is None, server.log.read_text()[-3000:]
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        time.sleep(0.2)


@dataclass
class Cluster:
    """``serve --processes 3`` (``multi``), a single-process ``serve`` (``single``: another host) and two
    standalone workers, on one database."""

    multi: Server
    single: Server
    workers: list[subprocess.Popen[bytes]]

    @property
    def bases(self) -> list[str]:
        return [self.multi.base, self.single.base]


@contextmanager
def cluster(config: Path, directory: Path, *, workers: int = 2,
            multi_env: dict[str, str] | None = None) -> Iterator[Cluster]:
    """Start everything at once (the imports take most of the time), ready when every process answers.
    ``multi_env``: more environment for the three-process server."""
    multi = start_serve(config, directory / "multi.log", "--processes", "3", env_extra=multi_env)
    single = start_serve(config, directory / "single.log")
    # the standalone workers poll once a second: work committed by a server process reaches them
    # sooner only through PostgreSQL NOTIFY
    started = [start_worker_process(config, directory / "workers.log", lease_seconds=5.0,
                                    poll_interval_s=1.0) for _ in range(workers)]
    group = Cluster(multi, single, started)
    try:
        wait_ready(multi)
        wait_ready(single)
        multi.processes_answering(3)
        yield group
    finally:
        problems = []
        for server in (multi, single):
            try:
                server.stop()
            except AssertionError as exc:
                problems.append(str(exc))
        for worker in started:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        for worker in started:
            try:
                worker.wait(20)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(10)
                problems.append("a worker did not stop on SIGTERM")
        assert not problems, problems


def run_threads(targets: list[Callable[[], Any]]) -> list[Any]:
    """Run each target in a thread of its own, all started at once; their results (exceptions re-raised)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(targets)) as pool:
        futures = [pool.submit(target) for target in targets]
        return [future.result() for future in futures]
