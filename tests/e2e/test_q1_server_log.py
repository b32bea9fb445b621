"""A real `cgt-gateway serve`: what clients put in a URL's query string (an EHR searching by MRN,
name or birth date) must not reach the server log, while the access log still names the path."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SITE_A = {"Authorization": "Bearer demo-site-a-token"}
ACME = {"Authorization": "Bearer demo-acme-token"}
PHI = ("MRN-Q1-5521", "Quintessa", "1966-02-03")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    env = {**os.environ, "CGT_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'q1.db'}"}
    env.pop("CGT_GATEWAY_CONFIG", None)
    log_path = tmp_path / "server.log"
    cli = Path(sys.executable).parent / "cgt-gateway"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(cli), "serve", "--port", str(port), "--no-worker"],
            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
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
            yield base, log_path
        finally:
            process.terminate()
            process.wait(timeout=10)


def test_query_strings_never_reach_the_server_log(served):
    base, log_path = served
    mrn, family, birth = PHI
    searches = [
        f"/fhir/Patient?identifier=https://site-a.example.org/fhir/sid/mrn|{mrn}",
        f"/fhir/Patient?family={family}&birthdate={birth}",
        f"/fhir/ServiceRequest?subject:Patient.identifier={mrn}",
        f"/v1/orders?site_id={family}",
    ]
    for path in searches:
        assert httpx.get(base + path, headers=SITE_A, timeout=10).status_code in (200, 400, 403)
    assert httpx.get(base + f"/v1/orders?note={family}", headers=ACME, timeout=10).status_code == 200
    time.sleep(0.3)  # let the access log lines be written
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    access = [entry["msg"] for entry in lines if entry["logger"] == "uvicorn.access"]
    # The access log still records each request's method, path and status.
    assert any('"GET /fhir/Patient HTTP/1.1" 400' in msg for msg in access), access
    assert any('"GET /v1/orders HTTP/1.1" 403' in msg for msg in access), access
    text = log_path.read_text()
    for secret in PHI:
        assert secret not in text, f"{secret!r} appeared in the server log"
