"""Sites send changes back to a real ``cgt-gateway serve``: the site engine is python-hl7's MLLP client
(and a real MLLP peer receiving our answers), the FHIR site is fhirpy, the manufacturer decides over
the REST API.  Also: the gateway SIGKILLed between commit and ACK, a port in use, ``cgt-gateway listen``.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import yaml

from gateway.store.db import make_engine
from mappings.ids import order_system, resource_id
from mappings.inbound.fhir import TASK_CODE_SYSTEM, TASK_INPUT_SYSTEM
from tests.conftest import ACME_COI, isbt_coi, order_body
from tests.e2e.serving import CLI, Served, free_port, serve
from tests.e2e.test_fhir_poller import fhir_client, valid
from tests.integration.test_delivery_support import ROOT, Peer, PeerLoop, wait_until
from tests.integration.test_inbound_mllp_support import Site, ack_code, message, segments
from tests.unit.inbound_cases import validate_strict

ACME = {"Authorization": "Bearer demo-acme-token"}
SITE_A_TOKEN = {"Authorization": "Bearer demo-site-a-token"}
JOURNEY = json.loads((ROOT / "fixtures/events/journey-autologous.json").read_text())


def write_config(directory: Path, inbound_port: int, engine_port: int | None) -> Path:
    """The demo configuration, site-a listening on ``inbound_port`` and delivering to ``engine_port``
    (None: no delivery, as the demo)."""
    demo = yaml.safe_load((ROOT / "gateway/demo/gateway.yaml").read_text())
    text = (ROOT / "fixtures/profiles/site-a.yaml").read_text()
    assert "    port: 2575\n" in text
    text = text.replace("    port: 2575\n", f"    port: {inbound_port}\n")
    if engine_port is not None:
        text += f"\ndelivery:\n  mllp: {{host: 127.0.0.1, port: {engine_port}, read_timeout_s: 5}}\n"
    (directory / "site-a.yaml").write_text(text)
    sites = [{**demo["sites"][0], "profile": str(directory / "site-a.yaml")},
             {**demo["sites"][1], "profile": str(ROOT / "fixtures/profiles/site-b.yaml")}]
    config = {**{k: v for k, v in demo.items() if k not in ("sites", "port", "host")}, "sites": sites}
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def peers() -> Iterator[PeerLoop]:
    loop = PeerLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, peers) -> Iterator[tuple[Served, int, Peer]]:
    """One ``serve`` with site-a's listener on a free port; site-a's engine is a real MLLP peer."""
    directory = tmp_path_factory.mktemp("inbound")
    engine_peer = Peer(peers).start()
    port = free_port()
    config = write_config(directory, port, engine_peer.port)
    with serve(directory, inbound=True, env_extra={"CGT_GATEWAY_CONFIG": str(config)}) as served:
        yield served, port, engine_peer
    log = (directory / "server.log").read_text()
    for secret in ("Quillon", "Zyxwvut", "MRN-0042", "Rivera", "MRN-448812", ACME_COI):
        assert secret not in log, f"{secret!r} appeared in the server log"


def database(served: Served):  # type: ignore[no-untyped-def]
    return make_engine(served.env["CGT_GATEWAY_DATABASE_URL"])


def answers_to_site(served: Served, order_id: str) -> list[str]:
    """The site's HL7v2 messages about ``order_id`` that its engine has taken (delivered), oldest first."""
    engine = database(served)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT payload FROM outbox_message WHERE destination = 'site-a/mllp' AND order_id = :o "
                "AND state = 'delivered' ORDER BY id"), {"o": order_id}).scalars().all()
    finally:
        engine.dispose()
    return list(rows)


def controls(served: Served, order_id: str) -> list[str]:
    return [control(p) for p in answers_to_site(served, order_id) if "ORC" in segments(p)]


def control(er7: str) -> str | None:
    """ORC-1 of the message's first ORC (None without one)."""
    orc = segments(er7).get("ORC")
    return orc[0][1] if orc else None


def place(base: str, order_id: str, coi: str = ACME_COI) -> None:
    response = httpx.post(f"{base}/v1/orders", json=order_body(order_id, coi=coi), headers=ACME)
    assert response.status_code == 201, response.text


def send(port: int, er7: str, answers: int = 2) -> list[str]:
    validate_strict(er7)
    with Site(port) as site:
        acks = site.send(er7, answers)
    for ack in acks:
        validate_strict(ack)
    return acks


def test_cancel_inside_the_window_is_applied_and_the_engine_gets_cr(gateway):
    served, port, _ = gateway
    place(served.base, "E2E-1")
    acks = send(port, message("oml-o21-cancel", "E2E-1", "E2E-CA-1"))
    assert [ack_code(a) for a in acks] == ["CA", "AA"]
    wait_until(lambda: "CR" in controls(served, "E2E-1"), "the CR answer delivered to site-a's engine")
    for payload in answers_to_site(served, "E2E-1"):
        validate_strict(payload)
    order = httpx.get(f"{served.base}/v1/orders/E2E-1", headers=ACME).json()
    assert order["status"] == "cancelled"


def test_a_late_cancel_declined_by_the_manufacturer_is_uc_and_changes_nothing(gateway):
    served, port, _ = gateway
    coi = isbt_coi(81)
    order = {**JOURNEY["order"], "order_id": "E2E-2", "coi": coi,
             "patient": {**JOURNEY["order"]["patient"], "mrn": "MRN-E2E-2"}}
    assert httpx.post(f"{served.base}/v1/orders", json=order, headers=ACME).status_code == 201
    for event in JOURNEY["events"]:
        data = {**event["data"], **({"din": "A999926123481"} if "din" in event["data"] else {}),
                **({"lot": event["data"]["lot"] + "-E2E-2"} if "lot" in event["data"] else {})}
        body = {**event, "event_id": f"{order['order_id']}-{event['event_id']}", "coi": coi, "data": data}
        response = httpx.post(f"{served.base}/v1/orders/E2E-2/events", json=body, headers=ACME)
        assert response.status_code == 201, response.text
        if event["type"] == "manufacturing.started":
            break
    before = httpx.get(f"{served.base}/v1/orders/E2E-2", headers=ACME).json()
    acks = send(port, message("oml-o21-cancel", "E2E-2", "E2E-CA-2", coi=coi))
    assert [ack_code(a) for a in acks] == ["CA", "AA"]
    listed = httpx.get(f"{served.base}/v1/site-requests", params={"order_id": "E2E-2"}, headers=ACME).json()
    [request] = listed["items"]
    assert request["state"] == "awaiting-manufacturer" and request["kind"] == "cancel"
    decided = httpx.post(f"{served.base}/v1/site-requests/{request['request_id']}/decision",
                         json={"decision": "decline", "reason": "Cells are in manufacturing"}, headers=ACME)
    assert decided.status_code == 200 and decided.json()["state"] == "declined"
    wait_until(lambda: "UC" in controls(served, "E2E-2"), "the UC answer delivered to site-a's engine")
    uc = next(p for p in answers_to_site(served, "E2E-2") if control(p) == "UC")
    validate_strict(uc)
    assert "Cells are in manufacturing" in segments(uc)["ORC"][0][16]
    after = httpx.get(f"{served.base}/v1/orders/E2E-2", headers=ACME).json()
    assert after["status"] == before["status"]


def test_reschedule_by_siu_goes_to_the_manufacturer_and_is_answered(gateway):
    served, port, _ = gateway
    place(served.base, "E2E-3", coi=isbt_coi(82))
    acks = send(port, message("siu-s13", "E2E-3", "E2E-S13-3", coi=isbt_coi(82)))
    assert [ack_code(a) for a in acks] == ["CA", "AA"]
    listed = httpx.get(f"{served.base}/v1/site-requests", params={"order_id": "E2E-3"}, headers=ACME).json()
    [request] = listed["items"]
    assert request["kind"] == "reschedule" and request["state"] == "awaiting-manufacturer"
    assert request["requested"]["appointment"] == "apheresis"
    decided = httpx.post(f"{served.base}/v1/site-requests/{request['request_id']}/decision",
                         json={"decision": "accept"}, headers=ACME)
    assert decided.status_code == 200, decided.text
    assert decided.json()["state"] == "accepted"
    wait_until(lambda: "XR" in controls(served, "E2E-3"), "the XR answer delivered to site-a's engine")


def test_a_fhir_site_cancels_with_a_request_task(gateway):
    served, _, _ = gateway
    place(served.base, "E2E-4", coi=isbt_coi(83))
    site = fhir_client(f"{served.base}/fhir", "site-a")
    order_task = resource_id("Task", order_system("acme-bio"), "E2E-4")
    task = site.resource("Task", status="requested", intent="order",
                         code={"coding": [{"system": TASK_CODE_SYSTEM, "code": "abort"}]},
                         focus={"reference": f"Task/{order_task}"},
                         reasonCode={"text": "Patient declined"})
    task.save()
    stored = valid(task)
    assert stored["status"] == "completed" and stored["id"]
    found = site.resources("Task").search(_id=stored["id"]).fetch()
    assert [t["id"] for t in found] == [stored["id"]]
    other_site = fhir_client(f"{served.base}/fhir", "site-b")
    assert other_site.resources("Task").search(_id=stored["id"]).fetch() == []
    wait_until(lambda: "CR" in controls(served, "E2E-4"), "the CR answer delivered to site-a's engine")


def test_duplicates_and_bad_messages_against_the_running_listener(gateway):
    served, port, _ = gateway
    place(served.base, "E2E-5", coi=isbt_coi(84))
    hold = message("oml-o21-hold", "E2E-5", "E2E-HD-5", coi=isbt_coi(84))
    first = send(port, hold)
    assert send(port, hold) == first
    listed = httpx.get(f"{served.base}/v1/site-requests", params={"order_id": "E2E-5"}, headers=ACME).json()
    assert len(listed["items"]) == 1
    with Site(port) as site:
        assert ack_code(site.send_raw(b"\x0bnot hl7 at all\x1c\r")[0]) == "AR"
        big = hold.replace("E2E-HD-5", "E2E-BIG-5") + "NTE|2|L|" + "y" * (1024 * 1024 + 10) + "\r"
        assert ack_code(site.send_raw(b"\x0b" + big.encode() + b"\x1c\r")[0]) == "CR"
        other = message("oml-o21-hold", "E2E-5", "E2E-WS-5", coi=isbt_coi(84),
                        **{"|CGT-GATEWAY|CGTGW|": "|SOMEONE-ELSE|NOWHERE|"})
        assert ack_code(site.send(other, answers=1)[0]) == "CR"
        release = message("oml-o21-release-hold", "E2E-5", "E2E-RL-5", coi=isbt_coi(84))
        assert [ack_code(a) for a in site.send(release)] == ["CA", "AA"]  # still serving
    wait_until(lambda: {"HR", "OR"} <= set(controls(served, "E2E-5")), "HR and OR delivered")


def _wait_exit(process: subprocess.Popen[bytes], timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert process.returncode is not None, "the process did not exit"
    return process.returncode


def test_killed_between_commit_and_ack_the_resend_is_processed_once(tmp_path, peers):
    engine_peer = Peer(peers).start()
    port = free_port()
    config = write_config(tmp_path, port, engine_peer.port)
    env = {"CGT_GATEWAY_CONFIG": str(config), "CGT_GATEWAY_INBOUND_MLLP_EXIT_AFTER_COMMIT": "true"}
    cancel = message("oml-o21-cancel", "KILL-1", "KILL-CA-1")
    # no worker in the process that dies: a delivery lease it held would delay the next one's deliveries
    with serve(tmp_path, "--no-worker", inbound=True, env_extra=env) as served:
        place(served.base, "KILL-1")
        with Site(port) as site:
            site.client.socket.sendall(b"\x0b" + cancel.encode() + b"\x1c\r")
            with pytest.raises((ConnectionError, OSError)):
                site.send_raw(b"", answers=1)  # no ACK: the process is gone
        assert _wait_exit(served.process) == 137
    with serve(tmp_path, inbound=True, env_extra={"CGT_GATEWAY_CONFIG": str(config)}) as served:
        acks = send(port, cancel)  # the site resends
        assert [ack_code(a) for a in acks] == ["CA", "AA"]
        assert send(port, cancel) == acks  # and again: the same stored answer
        listed = httpx.get(f"{served.base}/v1/site-requests", params={"order_id": "KILL-1"}, headers=ACME)
        assert len(listed.json()["items"]) == 1
        assert httpx.get(f"{served.base}/v1/orders/KILL-1", headers=ACME).json()["status"] == "cancelled"
        wait_until(lambda: controls(served, "KILL-1").count("CR") == 1, "one CR delivered")
        time.sleep(0.5)
        assert controls(served, "KILL-1").count("CR") == 1


def test_a_port_in_use_is_a_clear_start_up_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port, 9)
        env = {**os.environ, "CGT_GATEWAY_CONFIG": str(config), "CGT_GATEWAY_INBOUND_MLLP_ENABLED": "true",
               "CGT_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'busy.db'}"}
        for command in (["serve", "--port", str(free_port()), "--no-worker"], ["listen"]):
            result = subprocess.run([str(CLI), *command], env=env, capture_output=True, timeout=60)
            assert result.returncode != 0
            output = (result.stdout + result.stderr).decode()
            assert f"site 'site-a': cannot listen for HL7v2 (MLLP) on 127.0.0.1:{port}" in output, output


def test_listen_runs_only_the_listeners(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port, 9)
    env = {**os.environ, "CGT_GATEWAY_CONFIG": str(config),
           "CGT_GATEWAY_DATABASE_URL": f"sqlite:///{tmp_path / 'listen.db'}"}
    env.pop("CGT_GATEWAY_INBOUND_MLLP_ENABLED", None)
    log = (tmp_path / "listen.log").open("wb")
    process = subprocess.Popen([str(CLI), "listen"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                alive = process.poll() is None and time.monotonic() < deadline
                assert alive, (tmp_path / "listen.log").read_text()
                time.sleep(0.2)
        acks = send(port, message("oml-o21-cancel", "NO-SUCH-ORDER", "LISTEN-1"))
        assert [ack_code(a) for a in acks] == ["CA", "AE"]
        assert segments(acks[1])["ERR"][0][3].split("^")[0] == "204"
    finally:
        process.send_signal(signal.SIGTERM)
        code = _wait_exit(process)
        log.close()
    assert code == 0, (tmp_path / "listen.log").read_text()


def test_a_fhir_site_changes_a_date_and_reports_the_infusion(gateway):
    """fhirpy as the site: a ``change`` Task the manufacturer accepts (XR to the engine, Task completed),
    then a Procedure on an order whose infusion is scheduled (the order is infused)."""
    served, _, _ = gateway
    site = fhir_client(f"{served.base}/fhir", "site-a")
    place(served.base, "E2E-6", coi=isbt_coi(85))
    change = site.resource(
        "Task", status="requested", intent="order",
        code={"coding": [{"system": TASK_CODE_SYSTEM, "code": "change"}]},
        focus={"reference": f"Task/{resource_id('Task', order_system('acme-bio'), 'E2E-6')}"},
        input=[{"type": {"coding": [{"system": TASK_INPUT_SYSTEM, "code": "requested-start"}]},
                "valueDateTime": "2026-12-18T09:00:00-05:00"}])
    change.save()
    assert valid(change)["status"] == "received"
    request_id = change["identifier"][0]["value"]
    decided = httpx.post(f"{served.base}/v1/site-requests/{request_id}/decision",
                         json={"decision": "accept"}, headers=ACME)
    assert decided.status_code == 200, decided.text
    assert valid(site.reference("Task", change["id"]).to_resource())["status"] == "completed"
    wait_until(lambda: "XR" in controls(served, "E2E-6"), "the XR answer delivered to site-a's engine")

    coi = isbt_coi(86)
    order = {**JOURNEY["order"], "order_id": "E2E-7", "coi": coi,
             "patient": {**JOURNEY["order"]["patient"], "mrn": "MRN-E2E-7"}}
    assert httpx.post(f"{served.base}/v1/orders", json=order, headers=ACME).status_code == 201
    for event in JOURNEY["events"]:
        data = {**event["data"], **({"din": "A999926123486"} if "din" in event["data"] else {}),
                **({"lot": event["data"]["lot"] + "-E2E-7"} if "lot" in event["data"] else {})}
        body = {**event, "event_id": f"{order['order_id']}-{event['event_id']}", "coi": coi, "data": data}
        response = httpx.post(f"{served.base}/v1/orders/E2E-7/events", json=body, headers=ACME)
        assert response.status_code == 201, response.text
        if event["type"] == "infusion.scheduled":
            break
    service_request = site.reference(
        "ServiceRequest", resource_id("ServiceRequest", order_system("acme-bio"), "E2E-7")).to_resource()
    given = datetime.now(UTC) - timedelta(hours=1)
    procedure = site.resource("Procedure", status="completed",
                              basedOn=[{"reference": f"ServiceRequest/{service_request['id']}"}],
                              subject={"reference": service_request["subject"]["reference"]},
                              performedDateTime=given.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    procedure.save()  # 201 with the Procedure as stored: fhirpy's object becomes it (id, meta, identifier)
    assert valid(procedure)["resourceType"] == "Procedure"
    assert procedure["meta"]["versionId"] == "1" and procedure["identifier"][0]["value"].startswith("sr-")
    assert site.reference("Procedure", procedure["id"]).to_resource().serialize()["basedOn"] == [
        {"reference": f"ServiceRequest/{service_request['id']}"}]
    assert httpx.get(f"{served.base}/v1/orders/E2E-7", headers=ACME).json()["status"] == "infused"
