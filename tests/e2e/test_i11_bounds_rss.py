"""Issue 11 (search, error lists, cursors): the abusive requests of this part, sent in a loop to a fresh
process, leave its peak RSS under 300 MB (the 80k-identifier search alone took it from 195 MB to
2.5 GB before).  The process is a separate interpreter so the test suite's own memory is not counted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r'''
import base64, json, sys, tempfile
sys.path.insert(0, sys.argv[1])
from tests.conftest import TestClient, order_body
from gateway.bootstrap import create_app
from gateway.config import DEMO_CONFIG, load_settings
from gateway.store.db import make_engine, migrate
from tests.integration.test_i11_fhir_search_bounds import _shape

directory = tempfile.mkdtemp()
url = f"sqlite:///{directory}/rss.db"
engine = make_engine(url)
migrate(engine)
client = TestClient(create_app(load_settings(DEMO_CONFIG, database_url=url), engine=engine))
SITE = {"Authorization": "Bearer demo-site-a-token"}
ACME = {"Authorization": "Bearer demo-acme-token", "Content-Type": "application/json"}
FORM = {**SITE, "Content-Type": "application/x-www-form-urlencoded"}
statuses = set()
unknown = order_body("RSS-1")
unknown.update({f"k{n}": 1 for n in range(70_000)})
unknown = json.dumps(unknown)
for round_ in range(3):
    for n in range(3):
        body = "&".join(["identifier=x"] * (80_000 + round_ * 3 + n))
        statuses.add(client.post("/fhir/Task/_search", content=body, headers=FORM).status_code)
    for i in range(200):
        statuses.add(client.get("/fhir/Task", params=_shape(i) + [("_count", str(round_ + 1))],
                                headers=SITE).status_code)
    for n in range(3):
        statuses.add(client.post("/v1/orders", content=unknown, headers=ACME).status_code)
    for pk in (2**63, 2**63 + round_, -1):
        cursor = base64.urlsafe_b64encode(json.dumps(["2026-11-25T09:00:00+00:00", pk]).encode()).decode()
        statuses.add(client.get("/v1/orders", params={"cursor": cursor}, headers=ACME).status_code)
    statuses.add(client.get("/fhir/Task", params={"_count": "\u00b2"}, headers=SITE).status_code)
peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) // 1024
print(json.dumps({"peak_mb": peak, "statuses": sorted(statuses)}))
'''


def test_the_abusive_requests_in_a_loop_keep_peak_rss_under_300_mb():
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    import json

    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["statuses"] == [200, 400, 422], result
    assert result["peak_mb"] < 300, result
