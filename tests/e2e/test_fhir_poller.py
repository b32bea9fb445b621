"""The FHIR API driven by fhirpy, an independent FHIR client, against a live uvicorn server, the
way an EHR's interface engine polls it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fhir.resources.R4B import get_fhir_model_class
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import ResourceNotFound

from gateway.bootstrap import create_app
from gateway.store.db import write_session
from gateway.store.fhir import save_translation
from gateway.store.fhir_tables import FhirResourceCurrent, FhirResourceVersion
from tests.integration.test_fhir_store_support import T0, order_resources, seed_order

TOKENS = {"site-a": "demo-site-a-token", "site-b": "demo-site-b-token", "acme-bio": "demo-acme-token",
          "nova-cell": "demo-nova-token", "admin": "demo-admin-token"}


@pytest.fixture
def fhir_base(settings, engine) -> Iterator[str]:
    """The app on a live uvicorn server, 127.0.0.1 on an ephemeral port, in a thread; its
    ``public_base_url`` is that address (absolute URLs never come from the request's Host)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    live = settings.model_copy(update={"public_base_url": f"http://127.0.0.1:{port}"})
    config = uvicorn.Config(create_app(live, engine=engine), host="127.0.0.1", port=port, lifespan="off",
                            log_level="warning", ws="none")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}/fhir"
    server.should_exit = True
    thread.join(10)


def fhir_client(base: str, who: str) -> SyncFHIRClient:
    return SyncFHIRClient(base, authorization=f"Bearer {TOKENS[who]}", requests_config={"timeout": 10})


def valid(resource: Any) -> dict[str, Any]:
    data = resource.serialize() if hasattr(resource, "serialize") else dict(resource)
    get_fhir_model_class(data["resourceType"]).model_validate(data)
    return data


def _task_update(order_id: str, step: int) -> list[dict[str, Any]]:
    statuses = [("requested", "order-placed"), ("accepted", "order-accepted"),
                ("in-progress", "manufacturing")]
    status, business = statuses[step % len(statuses)]
    return [r for r in order_resources(order_id, task_status=status, business_status=business,
                                       modified=T0 + timedelta(minutes=step)) if r["resourceType"] == "Task"]


def test_watermark_poller_with_concurrent_writes_ends_with_exactly_the_stored_versions(fhir_base, engine):
    """A `_lastUpdated=gt<watermark>` poller (pages of 7) and a `_history?_since=` poller run while
    another thread creates and updates orders, some with a clock that lags.  At the end the search
    poller holds exactly the current version of every Task, having never received the same version
    twice, and the history poller holds exactly every Task version stored."""
    client = fhir_client(fhir_base, "site-a")
    done = threading.Event()
    failures: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(60):
                order_id = f"c{i % 15}"
                # every third write comes from a writer whose clock is a minute behind
                now = datetime.now(UTC) - (timedelta(minutes=1) if i % 3 == 0 else timedelta())
                resources = order_resources(order_id) if i < 15 else _task_update(order_id, i // 15)
                with write_session(engine) as session:
                    save_translation(session, site_id="site-a", manufacturer_id="acme-bio", order_id=order_id,
                                     resources=resources, now=now)
                time.sleep(0.002)
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    received: list[tuple[str, str]] = []
    latest: dict[str, int] = {}
    history: set[tuple[str, str]] = set()
    watermark: str | None = None
    since: str | None = None
    quiet_after_done = 0
    while quiet_after_done < 2:
        finished = done.is_set()
        params: dict[str, Any] = {} if watermark is None else {"_lastUpdated": f"gt{watermark}"}
        new = 0
        for task in client.resources("Task").search(**params).sort("_lastUpdated").limit(7):
            valid(task)
            received.append((task["id"], task["meta"]["versionId"]))
            latest[task["id"]] = max(latest.get(task["id"], 0), int(task["meta"]["versionId"]))
            watermark = max(watermark or "", task["meta"]["lastUpdated"])
            new += 1
        bundle = client.execute("Task/_history", method="get", params={"_since": since} if since else None)
        newest = since
        while True:
            for entry in bundle.get("entry", []):
                resource = entry["resource"]
                history.add((resource["id"], resource["meta"]["versionId"]))
                newest = max(newest or "", resource["meta"]["lastUpdated"])
            url = next((lnk["url"] for lnk in bundle["link"] if lnk["relation"] == "next"), None)
            if url is None:
                break
            bundle = client.execute(url, method="get")
        since = newest
        quiet_after_done = quiet_after_done + 1 if finished and new == 0 else 0
    thread.join()
    assert not failures
    assert len(received) == len(set(received)), "a version was delivered twice"
    with engine.connect() as conn:
        current = dict(conn.execute(sa.select(FhirResourceCurrent.resource_id, FhirResourceCurrent.version_id)
                                    .where(FhirResourceCurrent.resource_type == "Task")).all())
        versions = {(rid, str(v)) for rid, v in conn.execute(
            sa.select(FhirResourceVersion.resource_id, FhirResourceVersion.version_id)
            .where(FhirResourceVersion.resource_type == "Task")).all()}
    assert len(current) == 15 and latest == current
    assert set(received) <= versions
    assert history == versions and len(versions) == 60


def test_paging_with_count_7_over_100_tasks(fhir_base, engine):
    with write_session(engine) as session:  # one transaction, 100 orders' Tasks
        for n in range(100):
            order_id = f"pg{n:03}"
            tasks = [r for r in order_resources(order_id) if r["resourceType"] == "Task"]
            save_translation(session, site_id="site-a", manufacturer_id="acme-bio", order_id=order_id,
                             resources=tasks, now=T0 + timedelta(seconds=n))
    client = fhir_client(fhir_base, "acme-bio")
    tasks = client.resources("Task").limit(7).fetch_all()
    assert len(tasks) == 100 and len({t["id"] for t in tasks}) == 100
    assert [t["meta"]["lastUpdated"] for t in tasks] == sorted(t["meta"]["lastUpdated"] for t in tasks)
    pages = 0
    bundle = client.resources("Task").search(_total="accurate").limit(7).fetch_raw()
    while True:
        pages += 1
        data = valid(bundle)
        assert data["type"] == "searchset" and data["total"] == 100
        assert all(e["search"]["mode"] == "match" for e in data["entry"])
        assert all(e["fullUrl"].startswith(fhir_base) for e in data["entry"])
        next_url = next((lnk["url"] for lnk in data["link"] if lnk["relation"] == "next"), None)
        if next_url is None:
            break
        bundle = client.execute(next_url, method="get")
    assert pages == 15 and len(data["entry"]) == 2
    assert client.resources("Task").search(_summary="count").fetch_raw()["total"] == 100


def test_conditional_reads_give_304(fhir_base, engine):
    seed_order(engine, "cr1", now=T0)
    client = fhir_client(fhir_base, "site-a")
    task = client.resources("Task").search(identifier="urn:acme-bio:order|cr1").get()
    valid(task)
    url = f"{fhir_base}/Task/{task['id']}"
    auth = {"Authorization": f"Bearer {TOKENS['site-a']}"}
    first = httpx.get(url, headers=auth)
    assert first.status_code == 200 and first.headers["etag"] == 'W/"1"'
    assert httpx.get(url, headers={**auth, "If-None-Match": first.headers["etag"]}).status_code == 304
    since = first.headers["last-modified"]
    assert httpx.get(url, headers={**auth, "If-Modified-Since": since}).status_code == 304
    task.refresh()  # fhirpy sends If-None-Match with the bare versionId: 304, resource kept
    assert task["meta"]["versionId"] == "1"
    seed_order(engine, "cr1", now=T0 + timedelta(minutes=1), task_status="accepted")
    assert httpx.get(url, headers={**auth, "If-None-Match": 'W/"1"'}).status_code == 200
    task.refresh()
    assert task["meta"]["versionId"] == "2" and task["status"] == "accepted"


def test_cross_site_and_cross_manufacturer_reads_are_404(fhir_base, engine):
    written = seed_order(engine, "x1", now=T0)
    task_id = next(r["id"] for r in written if r["resourceType"] == "Task")
    for who in ("site-b", "nova-cell"):
        other = fhir_client(fhir_base, who)
        with pytest.raises(ResourceNotFound):
            other.reference("Task", task_id).to_resource()
        with pytest.raises(ResourceNotFound):
            other.execute(f"Task/{task_id}/_history", method="get")
        assert other.resources("Task").search(_id=task_id).fetch() == []
    for who in ("site-a", "acme-bio", "admin"):
        assert valid(fhir_client(fhir_base, who).reference("Task", task_id).to_resource())["id"] == task_id
