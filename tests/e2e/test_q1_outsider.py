"""The product from the outside: a real `cgt-gateway serve` and the README's CLI examples, verbatim.

* What clients put in a URL's query string (an EHR searching by MRN, name or birth date) must not
  reach the server log, while the access log still names the path.
* README's `token create` prints a token once; it works against the running server.
* README's `profile validate` and `profile preview` examples do what README says.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.serving import serve

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "cgt-gateway"
SITE_A = {"Authorization": "Bearer demo-site-a-token"}
ACME = {"Authorization": "Bearer demo-acme-token"}
PHI = ("MRN-Q1-5521", "Quintessa", "1966-02-03")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, dict[str, str]]]:
    with serve(tmp_path, "--no-worker", database="q1.db") as server:
        yield server.base, server.log_path, server.env


def test_query_strings_never_reach_the_server_log(served):
    base, log_path, _ = served
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


def _readme_cli(marker: str) -> str:
    """The README command (continuation lines joined) that starts with ``marker``."""
    text = (ROOT / "README.md").read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        command = ""
        for line in block.splitlines():
            if line.startswith(marker) or command:
                command += line.rstrip("\\").rstrip() + " "
                if not line.rstrip().endswith("\\"):
                    return command.replace(".venv/bin/cgt-gateway", str(CLI)).strip()
    raise AssertionError(f"README has no command starting {marker!r}")


def test_readme_token_create_prints_a_token_that_works(served):
    base, _, env = served
    command = _readme_cli(".venv/bin/cgt-gateway token create")
    out = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert re.fullmatch(r"\S{20,}", token), out.stdout
    assert token not in out.stderr
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(base + "/v1/orders", headers=headers, timeout=10).status_code == 200
    # The role is manufacturer:acme-bio: it may not read the safety log.
    assert httpx.get(base + "/v1/admin/safety-log", headers=headers, timeout=10).status_code == 403


def test_readme_profile_validate_example():
    out = subprocess.run(["bash", "-c", _readme_cli(".venv/bin/cgt-gateway profile validate")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = (out.stdout + out.stderr).splitlines()
    assert re.match(r"fixtures/profiles/site-a\.yaml: ok \(version sha256:[0-9a-f]+\)$", lines[0]), lines
    problems = [line for line in lines if line.startswith("fixtures/profiles/broken/")]
    assert problems and all(re.match(r"[^:]+\.yaml:\d+: \S+: .+", line) for line in problems), problems
    assert "fixtures/profiles/broken/missing.yaml:3: patient.mrn_system: field required" in problems


def test_readme_profile_preview_example():
    out = subprocess.run(["bash", "-c", _readme_cli(".venv/bin/cgt-gateway profile preview")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    steps = [line for line in out.stdout.splitlines() if line.startswith("=== ")]
    case = json.loads((ROOT / "fixtures/events/journey-cancelled.json").read_text())
    assert len(steps) == len(case["events"]) + 1  # the placement, then each event
    assert out.stdout.count("--- FHIR transaction Bundle") >= len(steps) - 1
    assert "--- HL7v2" in out.stdout and "--- issues" in out.stdout
