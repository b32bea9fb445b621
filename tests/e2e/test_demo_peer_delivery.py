"""``make run``'s demo delivery, end to end: a real ``cgt-gateway serve --with-demo-peer`` on the demo
configuration (site-b's ``delivery.mllp`` pointed at a free port instead of 2576, the peer told the same
port): README's examples deliver site-b's messages to the demo peer; told ``AE`` the message is
dead-lettered with an alert, told ``AR`` it is retried with the same control id, holding the queue, as
site-b's profile's policy says; the README section "See delivery in the demo" runs as written; ``/metrics``
then shows the traffic."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.serving import Served, free_port, serve
from tests.e2e.test_spine_readme import _readme_commands

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ADMIN = {"Authorization": "Bearer demo-admin-token"}
NOVA = {"Authorization": "Bearer demo-nova-token"}
PHI = ("Doe", "Jane", "MRN-0042", "1980-04-12", "Roe", "B-7781")


def demo_config(directory: Path, peer_port: int) -> Path:
    """The demo configuration with site-b delivering to ``peer_port`` (nothing else changed)."""
    demo = yaml.safe_load((ROOT / "gateway/demo/gateway.yaml").read_text())
    site_b = (ROOT / "fixtures/profiles/site-b.yaml").read_text()
    assert "\n    port: 2576\n" in site_b
    (directory / "site-b.yaml").write_text(site_b.replace("\n    port: 2576\n", f"\n    port: {peer_port}\n"))
    sites = [{**demo["sites"][0], "profile": str(ROOT / "fixtures/profiles/site-a.yaml")},
             {**demo["sites"][1], "profile": str(directory / "site-b.yaml")}]
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump({**{k: v for k, v in demo.items() if k not in ("sites", "port", "host")},
                                    "sites": sites}))
    (directory / "var").mkdir(exist_ok=True)
    return path


def serve_with_peer(directory: Path):  # type: ignore[no-untyped-def]
    peer_port = free_port()
    config = demo_config(directory, peer_port)
    return serve(directory, "--with-demo-peer",
                 env_extra={"CGT_GATEWAY_CONFIG": str(config), "CGT_GATEWAY_DEMO_PEER_PORT": str(peer_port)})


def wait_for(condition: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def outbox(served: Served, **params: str) -> list[dict[str, Any]]:
    response = httpx.get(served.base + "/v1/admin/outbox", params=params, headers=ADMIN, timeout=5)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def message(served: Served, message_id: int) -> dict[str, Any]:
    return dict(httpx.get(f"{served.base}/v1/admin/outbox/{message_id}", headers=ADMIN, timeout=5).json())


def run_readme_curls(served: Served) -> None:
    """Every curl of README's "Try it" and delivery sections, as the spine README test runs them."""
    for command in _readme_commands():
        command = command.replace("http://127.0.0.1:8080", served.base)
        subprocess.run(["bash", "-c", command], capture_output=True, timeout=30, check=True)


def assert_no_phi_in_log(served: Served) -> None:
    text = served.log_path.read_text()
    for secret in PHI:
        assert secret not in text, f"{secret!r} appeared in the server log"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_examples_are_delivered_to_the_demo_peer_and_the_section_runs(tmp_path: Path) -> None:
    with serve_with_peer(tmp_path) as served:
        run_readme_curls(served)
        # NOVA-2001 (site-b) was placed: its ORM^O01 NW reaches the demo peer, ACKed AA, within a bounded time
        delivered = wait_for(lambda: outbox(served, destination="site-b/mllp", state="delivered"),
                             "site-b's order message delivered")
        assert [(m["order_id"], m["message_type"]) for m in delivered] == [("NOVA-2001", "ORM^O01")]
        [attempt] = message(served, delivered[0]["id"])["attempt_log"]
        assert (attempt["outcome"], attempt["ack_code"]) == ("delivered", "AA")
        assert not outbox(served, destination="site-a/mllp")  # site-a's EHR polls /fhir: no MLLP rows

        env = {**served.env, "PATH": f"{BIN}:{served.env.get('PATH', '')}"}
        readme = (ROOT / "README.md").read_text()
        section = readme.split("## See delivery in the demo\n", 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
        assert len(blocks) == 3

        def run(block: str) -> str:
            script = (block.replace("http://127.0.0.1:8080", served.base)
                      .replace(".venv/bin/cgt-gateway", str(BIN / "cgt-gateway")))
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            return done.stdout

        listed = run(blocks[0])
        assert '"order_id":"NOVA-2001"' in listed and '"state":"delivered"' in listed
        dead = wait_for(lambda: outbox(served, destination="site-b/mllp", state="dead"), "the AE dead letter")
        assert [(m["event_id"], m["last_outcome"]) for m in dead] == [("NOVA-EVT-2", "dead")]
        dead_id = dead[0]["id"]
        [attempt] = message(served, dead_id)["attempt_log"]
        assert attempt["ack_code"] == "AE" and "told to answer AE" in attempt["detail"]

        shown = run(blocks[1])
        assert f'"id":{dead_id}' in shown.replace(" ", "") and '"dead-letter"' in shown.replace(" ", "")
        wait_for(lambda: message(served, dead_id)["state"] == "delivered", "the replayed message delivered")
        log = message(served, dead_id)["attempt_log"]
        assert [(a["outcome"], a["ack_code"]) for a in log] == [("dead", "AE"), ("delivered", "AA")]

        metrics = run(blocks[2])
        lines = dict(line.rsplit(" ", 1) for line in metrics.splitlines())
        assert float(lines['cgt_outbox_messages{destination="site-b/mllp",state="delivered"}']) == 2
        assert float(lines['cgt_delivery_attempts_total{destination="site-b/mllp",outcome="delivered"}']) == 2
        assert float(lines['cgt_delivery_attempts_total{destination="site-b/mllp",outcome="dead"}']) == 1
        latency = 'cgt_delivery_latency_seconds_count{destination="site-b/mllp",outcome="delivered"}'
        assert float(lines[latency]) == 2
        # README's first run: orders ORD-1001 and NOVA-2001 accepted, ORD-1002 refused (validation-failed);
        # the repeat of ORD-1001 is not in "Try it"; NOVA-EVT-2 accepted here
        assert float(lines['cgt_intake_requests_total{code="",kind="order",outcome="accepted"}']) == 2
        rejected = 'cgt_intake_requests_total{code="%s",kind="event",outcome="rejected"}'
        assert float(lines[rejected % "coi-mismatch"]) == 1
        assert float(lines[rejected % "din-in-use"]) == 1
        assert float(lines['cgt_intake_requests_total{code="retraction-conflict",kind="retraction",'
                           'outcome="rejected"}']) == 1
        full = httpx.get(served.base + "/metrics", timeout=5).text
        assert 'route="/v1/orders/{order_id}/events"' in full
        assert not re.search(r'route="[^"]*(ORD-1001|NOVA-2001|EVT-)', full)
        assert not any(secret in full for secret in PHI)
    assert_no_phi_in_log(served)


def test_told_ar_the_message_is_retried_with_its_control_id_holding_the_queue(tmp_path: Path) -> None:
    with serve_with_peer(tmp_path) as served:
        (tmp_path / "var" / "demo-peer.ctl").write_text("AR *\n")
        order = {"order_id": "NOVA-3001", "coi": "NC-000301", "product_code": "GT-HEM-01",
                 "site_id": "site-b",
                 "patient": {"mrn": "B-7781", "family": "Roe", "given": ["Sam"], "birth_date": "1992-07-30",
                             "sex": "male"},
                 "ordering_provider": {"npi": "1234567893", "family": "Okafor", "given": ["Ada"]},
                 "priority": "urgent"}
        assert httpx.post(served.base + "/v1/orders", json=order, headers=NOVA, timeout=10).status_code == 201
        event = {"event_id": "NOVA-3001-E1", "type": "order.confirmed", "occurred_at": "2026-11-26T09:00:00Z",
                 "coi": "NC-000301", "data": {"slot_id": "SLOT-1"}}
        response = httpx.post(served.base + "/v1/orders/NOVA-3001/events", json=event, headers=NOVA,
                              timeout=10)
        assert response.status_code == 201, response.text

        def retried() -> list[dict[str, Any]]:
            rows = outbox(served, destination="site-b/mllp")
            return rows if rows and rows[0]["attempts"] >= 2 else []

        first, second = wait_for(retried, "two AR attempts of the order message")
        assert first["state"] == "pending" and first["last_outcome"] == "retry"
        assert second["state"] == "pending" and second["attempts"] == 0  # the queue waits behind it
        log = message(served, first["id"])["attempt_log"]
        assert all(a["ack_code"] == "AR" and a["outcome"] == "retry" for a in log)
        (tmp_path / "var" / "demo-peer.ctl").unlink()
        wait_for(lambda: all(m["state"] == "delivered" for m in outbox(served, destination="site-b/mllp")),
                 "both messages delivered once the peer answers AA", timeout_s=60)
        final = message(served, first["id"])
        assert final["control_id"] == first["control_id"]
        assert final["attempt_log"][-1]["ack_code"] == "AA"
    assert_no_phi_in_log(served)
