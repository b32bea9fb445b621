"""The load generator, run in its own process: ``python -m bench.loadgen < spec.json > result.json``.

A small asyncio HTTP/1.1 client on keep-alive loopback connections (one request in flight per
connection), so the generator costs far less CPU than the server it drives.  Scenarios:

- ``journeys``: closed loop, ``concurrency`` manufacturers each posting whole journeys (the order,
  then each event in turn) until ``max_requests`` or ``max_seconds``.
- ``journeys_rate``: open loop at a fixed ``rate`` per second; latency counts from the scheduled
  send time, so a slow server cannot hide its queueing (no coordinated omission).
- ``get``: closed loop, ``concurrency`` connections cycling through ``paths``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections import deque
from typing import Any

import orjson

__all__ = ["Connection", "run_spec"]


class Connection:
    """One keep-alive HTTP/1.1 connection; answers must carry Content-Length (uvicorn's do)."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.extra}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.writer.write(head.encode() + b"\r\n" + (body or b""))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value.strip())
            elif name.lower() == "transfer-encoding":
                raise RuntimeError("chunked answers are not supported by the load generator")
        content = await self.reader.readexactly(length or 0)
        return status, content

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass


def _journey_requests(journey: dict[str, Any]) -> list[tuple[str, bytes]]:
    order_id = journey["order_id"]
    out = [("/v1/orders", orjson.dumps(journey["order"]))]
    out += [(f"/v1/orders/{order_id}/events", orjson.dumps(e)) for e in journey["events"]]
    return out


class _Recorder:
    def __init__(self) -> None:
        self.latencies_ms: list[float] = []
        self.statuses: dict[str, int] = {}
        self.error_samples: list[str] = []

    def add(self, started: float, status: int, content: bytes) -> None:
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        if status >= 300 and len(self.error_samples) < 3:
            self.error_samples.append(content[:300].decode("utf-8", "replace"))


async def _journeys(spec: dict[str, Any], rec: _Recorder) -> float:
    journeys = iter(spec["journeys"])
    deadline = time.perf_counter() + spec["max_seconds"]
    budget = itertools.count()
    max_requests = spec["max_requests"]

    async def worker() -> None:
        conn = Connection("127.0.0.1", spec["port"], spec["headers"])
        try:
            for journey in journeys:
                for path, body in _journey_requests(journey):
                    if next(budget) >= max_requests or time.perf_counter() > deadline:
                        return
                    started = time.perf_counter()
                    status, content = await conn.request("POST", path, body)
                    rec.add(started, status, content)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    return time.perf_counter() - started


async def _journeys_rate(spec: dict[str, Any], rec: _Recorder) -> float:
    rate, total = spec["rate"], int(spec["rate"] * spec["max_seconds"])
    fresh = iter(spec["journeys"])
    idle: deque[tuple[Connection, deque[tuple[str, bytes]]]] = deque()
    tasks: set[asyncio.Task[None]] = set()
    connections: list[Connection] = []

    async def send(conn: Connection, pending: deque[tuple[str, bytes]], scheduled: float) -> None:
        path, body = pending.popleft()
        status, content = await conn.request("POST", path, body)
        rec.add(scheduled, status, content)
        if pending:
            idle.append((conn, pending))
        else:
            nxt = next(fresh, None)
            if nxt is not None:
                idle.append((conn, deque(_journey_requests(nxt))))

    started = time.perf_counter()
    for i in range(total):
        scheduled = started + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if not idle:
            nxt = next(fresh, None)
            if nxt is None:
                break
            conn = Connection("127.0.0.1", spec["port"], spec["headers"])
            connections.append(conn)
            idle.append((conn, deque(_journey_requests(nxt))))
        conn, pending = idle.popleft()
        task = asyncio.create_task(send(conn, pending, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for conn in connections:
        await conn.close()
    rec.statuses["connections"] = len(connections)
    return elapsed


async def _get(spec: dict[str, Any], rec: _Recorder) -> float:
    paths = itertools.cycle(spec["paths"])
    deadline = time.perf_counter() + spec["max_seconds"]
    budget = itertools.count()

    async def worker() -> None:
        conn = Connection("127.0.0.1", spec["port"], spec["headers"])
        try:
            while next(budget) < spec["max_requests"] and time.perf_counter() < deadline:
                started = time.perf_counter()
                status, content = await conn.request("GET", next(paths))
                rec.add(started, status, content)
        finally:
            await conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    return time.perf_counter() - started


async def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.stats import summary

    rec = _Recorder()
    scenario = {"journeys": _journeys, "journeys_rate": _journeys_rate, "get": _get}[spec["scenario"]]
    elapsed = await scenario(spec, rec)
    return {
        **summary(rec.latencies_ms, elapsed),
        "statuses": rec.statuses,
        "error_samples": rec.error_samples,
    }


def main() -> None:
    spec = json.loads(sys.stdin.buffer.read())
    try:
        from uvloop import run as run_loop  # the same event loop uvicorn picks
    except ImportError:
        run_loop = asyncio.run
    result = run_loop(run_spec(spec))
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
