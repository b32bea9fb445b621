"""Issue 11: slow clients holding half-sent headers were never timed out.  ``cgt-gateway serve``'s
uvicorn options (:mod:`gateway.cli.http_server`) add a head deadline, a body deadline and a head size
limit to uvicorn's own protocol (httptools and h11 alike), over a real server on a free port driven
by raw sockets, while other clients keep being served."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from gateway.audit.trail import stop_all_threads
from gateway.bootstrap import create_app
from gateway.cli.http_server import uvicorn_options
from gateway.config import DEMO_CONFIG, load_settings
from tests.conftest import ACME

HEADER_TIMEOUT = 0.5
BODY_TIMEOUT = 1.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(params=["httptools", "h11"])
def server(request, tmp_path) -> Iterator[tuple[str, int]]:
    from gateway.store.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'serve.db'}"
    engine = make_engine(url)
    migrate(engine)
    port = _free_port()
    settings = load_settings(DEMO_CONFIG, database_url=url, port=port, server_http=request.param,
                             server_loop="asyncio", server_header_timeout_s=HEADER_TIMEOUT,
                             server_body_timeout_s=BODY_TIMEOUT, server_max_header_bytes=4096)
    config = uvicorn.Config(create_app(settings, engine=engine), host="127.0.0.1", port=port, log_config=None,
                            log_level="warning", lifespan="off", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield "127.0.0.1", port
    server.should_exit = True
    thread.join(timeout=10)
    stop_all_threads()  # lifespan off: the app's audit thread started lazily
    engine.dispose()


def _connect(address: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(address, timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started, chunks = time.monotonic(), []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks), time.monotonic() - started
        chunks.append(chunk)


def _get(address: tuple[str, int], path: str = "/healthz") -> bytes:
    with _connect(address) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        return _read_until_closed(sock)[0]


def test_half_sent_headers_are_timed_out_while_others_are_served(server):
    stalled = [_connect(server) for _ in range(5)]
    for sock in stalled:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")  # and never the end of the head
    for _ in range(5):  # meanwhile everyone else is served
        assert _get(server).startswith(b"HTTP/1.1 200")
    for sock in stalled:
        with sock:
            answer, waited = _read_until_closed(sock)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert waited < HEADER_TIMEOUT + 5  # generous: a loaded 2-core machine


def test_a_connection_that_sends_nothing_is_closed(server):
    with _connect(server) as sock:
        answer, waited = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408") and waited < HEADER_TIMEOUT + 5


def test_a_stalled_body_is_timed_out(server):
    with _connect(server) as sock:
        token = ACME["Authorization"].encode()
        sock.sendall(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: " + token
                     + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"order_id\": ")
        assert _get(server).startswith(b"HTTP/1.1 200")
        answer, waited = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert waited < BODY_TIMEOUT + 5


def test_a_kept_alive_connection_stalling_in_its_next_head_is_timed_out(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"ok"}'):  # the whole first response, however it is split
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer, waited = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert waited < HEADER_TIMEOUT + 5


def test_a_slow_head_that_completes_in_time_is_served(server):
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(HEADER_TIMEOUT / 5)
        sock.sendall(b"Host: x\r\nConnection: close\r\n\r\n")
        answer, _ = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_a_head_beyond_the_size_limit_is_refused(server):
    with _connect(server) as sock:  # 5 KB of head (limit 4 KB here) and no end of it
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
            b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(5)))
        answer, _ = _read_until_closed(sock)
    # 431 from the deadline protocol (not a 408: refused for its size, not its time); h11 may refuse
    # first with its own 400 (h11_max_incomplete_event_size is the same limit)
    assert answer.startswith((b"HTTP/1.1 431", b"HTTP/1.1 400")), answer
    assert _get(server).startswith(b"HTTP/1.1 200")


def test_a_body_left_unread_after_an_early_answer_gets_no_second_answer(server):
    with _connect(server) as sock:  # refused 415 before its body is read; the body never completes
        sock.sendall(b"POST /fhir/Task/_search HTTP/1.1\r\nHost: x\r\n"
                     b"Authorization: Bearer demo-site-a-token\r\n"
                     b"Content-Type: text/plain\r\nContent-Length: 100\r\n\r\nstatus=")
        answer, waited = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 415"), answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # the deadline closes the connection, writes nothing
    assert waited < BODY_TIMEOUT + 5
