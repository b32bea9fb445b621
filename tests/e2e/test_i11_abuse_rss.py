"""Issue 11's abusive requests, sent in a loop to a real `cgt-gateway serve`: every one gets a quick 4xx,
nobody gets a 500, a poll between them is still served, and the server's resident memory stays under
300 MB (read from /proc, the process's own figure).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.serving import serve

ROOT = Path(__file__).resolve().parents[2]
SITE_A = {"Authorization": "Bearer demo-site-a-token"}
ACME = {"Authorization": "Bearer demo-acme-token"}
RSS_LIMIT_KB = 300 * 1024

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads RSS from /proc")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS line")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    with serve(tmp_path, "--no-worker", database="abuse.db") as server:
        yield server.base, server.process


def _preview_body(profile_yaml: str) -> dict[str, object]:
    case = json.loads((ROOT / "fixtures" / "events" / "journey-cancelled.json").read_text())
    return {"order": case["order"], "events": case["events"][:1], "profile_yaml": profile_yaml}


def _draft(override: str) -> str:
    profile = (ROOT / "fixtures" / "profiles" / "site-a.yaml").read_text()
    assert "hl7v2:" in profile
    return profile.replace("hl7v2:\n", "hl7v2:\n  overrides:\n    OBR-4: " + json.dumps(override) + "\n", 1)


def _abusive_requests() -> list[tuple[str, str, dict[str, object]]]:
    """(method, path, httpx keyword arguments) of every abusive request issue 11 names."""
    flat_list = "- x\n" * 250_000  # 1 MB of YAML list items
    duplicate_keys = "site_id: a\n" * 50_000
    return [
        ("POST", "/v1/sites/site-a/preview", {"json": _preview_body(_draft("{{ 3**20000000 }}"))}),
        ("POST", "/v1/sites/site-a/preview", {"json": _preview_body(_draft("{{ 'A'*200000000 }}"))}),
        ("POST", "/v1/sites/site-a/preview", {"json": _preview_body(_draft(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"))}),
        ("POST", "/v1/sites/site-a/preview", {"json": _preview_body(_draft("{{ lipsum(1000) }}"))}),
        ("POST", "/v1/sites/site-a/preview", {"json": _preview_body(flat_list[:900_000])}),
        ("POST", "/v1/sites/site-a/preview", {"json": _preview_body(duplicate_keys)}),
        ("POST", "/fhir/Task/_search", {"content": "&".join(["identifier=x"] * 80_000),
                                        "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
        ("GET", "/fhir/Task?_count=\u00b2", {}),
        ("GET", "/v1/orders?cursor=" + str(2**63), {}),
        ("POST", "/v1/orders", {"json": {f"k{i}": i for i in range(70_000)}}),
    ]


def test_abusive_requests_in_a_loop_stay_bounded(served):
    base, process = served
    with httpx.Client(base_url=base, timeout=30) as client:
        shapes = [f"/fhir/Task?{'&'.join(f'identifier=v{j}' for j in range(1, n + 1))}" for n in range(1, 41)]
        for round_ in range(3):
            for method, path, kwargs in _abusive_requests():
                headers = {**(ACME if path.startswith("/v1/orders") else SITE_A), **kwargs.pop("headers", {})}
                started = time.monotonic()
                response = client.request(method, path, headers=headers, **kwargs)
                elapsed = time.monotonic() - started
                assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:300])
                assert len(response.content) < 256 * 1024, (path, len(response.content))
                assert elapsed < 10, (path, elapsed)
                poll = client.get("/fhir/Task?_count=10", headers=SITE_A)
                assert poll.status_code == 200
            for shape in shapes:
                assert client.get(shape, headers=SITE_A).status_code in (200, 400)
            rss = _rss_kb(process.pid)
            print(f"round {round_}: RSS {rss / 1024:.0f} MB")
            assert rss < RSS_LIMIT_KB, f"round {round_}: RSS {rss / 1024:.0f} MB"
    assert process.poll() is None
