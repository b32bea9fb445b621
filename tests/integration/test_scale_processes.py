"""Exactness with several server processes and hosts on one PostgreSQL (issue 17).

One cluster for the module (starting processes is most of the cost): ``cgt-gateway serve --processes
3`` on one port, a single-process ``serve`` on another (a second host), two standalone ``cgt-gateway
worker``\\s, every server process also running its own delivery worker; site-a and site-b deliver over
MLLP to python-hl7 peers.  Requests go out on fresh connections, to both ports, so they spread over
the four server processes (``X-Cgt-Process`` shows which one answered).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fhirpy import AsyncFHIRClient
from sqlalchemy.engine import Engine

from gateway.delivery.outbox import OutboxMessage
from gateway.store.db import make_engine
from gateway.store.fhir_tables import FhirResourceCurrent, FhirResourceVersion
from gateway.store.tables import EventRow, OrderRow
from tests.conftest import ACME, _reset_postgres
from tests.e2e.serving import free_port
from tests.integration.test_delivery_support import Peer, PeerLoop, write_config
from tests.integration.test_inbound_mllp_support import Site, ack_code, message
from tests.integration.test_scale_support import Cluster, cluster, journey, pg_url, post, run_threads

pytestmark = pytest.mark.postgres

_M = OutboxMessage.__table__  # type: ignore[attr-defined]
_V = FhirResourceVersion.__table__  # type: ignore[attr-defined]
_C = FhirResourceCurrent.__table__  # type: ignore[attr-defined]
_E = EventRow.__table__  # type: ignore[attr-defined]
_O = OrderRow.__table__  # type: ignore[attr-defined]


@dataclass
class Scale:
    engine: Engine
    cluster: Cluster
    peers: dict[str, Peer]
    inbound: dict[str, int]  # site -> its inbound MLLP port


@pytest.fixture(scope="module")
def scale(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scale]:
    url = pg_url()
    engine = make_engine(url)
    _reset_postgres(engine)
    directory = tmp_path_factory.mktemp("scale")
    loop = PeerLoop()
    try:
        peers = {site: Peer(loop, delay_s=0.001).start() for site in ("site-a", "site-b")}
        config = write_config(directory, url, {site: peer.port for site, peer in peers.items()},
                              demo_clients=True)
        inbound = {}
        for site in peers:  # each site listens for HL7v2 on a port of its own (the three processes only)
            profile = directory / f"{site}.yaml"
            inbound[site] = free_port()
            text = profile.read_text().replace("    port: 2575\n", f"    port: {inbound[site]}\n")
            profile.write_text(text)
        with cluster(config, directory, multi_env={"CGT_GATEWAY_INBOUND_MLLP_ENABLED": "true"}) as group:
            yield Scale(engine, group, peers, inbound)
    finally:
        loop.close()
        engine.dispose()


def _spread(scale: Scale, i: int) -> str:
    """Request ``i`` goes to the three-process port twice as often as to the single process."""
    return scale.cluster.bases[1] if i % 3 == 2 else scale.cluster.bases[0]


def _post_journeys(scale: Scale, prefix: str, first_n: int, orders: int, *, site_of=lambda k: "site-a",
                   events: int = 8) -> dict[str, list[str]]:
    """Post ``orders`` journeys concurrently (one thread each, every request on a new connection,
    alternating ports); each order's events in its order.  Returns each order's event ids."""
    answered_by: Counter[str] = Counter()
    lock = threading.Lock()

    def one(k: int) -> tuple[str, list[str]]:
        order_id = f"{prefix}{k}"
        order, bodies = journey(order_id, first_n + k, site_of(k), events)
        answer = post(_spread(scale, k), "/v1/orders", order)
        assert answer.status_code == 201, answer.text
        for i, body in enumerate(bodies):
            answer = post(_spread(scale, k + i + 1), f"/v1/orders/{order_id}/events", body)
            assert answer.status_code == 201, answer.text
            with lock:
                answered_by[answer.headers["x-cgt-process"]] += 1
        return order_id, [b["event_id"] for b in bodies]

    result = dict(run_threads([lambda k=k: one(k) for k in range(orders)]))
    assert len(answered_by) >= 3, answered_by  # the work was spread over server processes
    return result


# ----------------------------------------------------------------------------- several processes serve


def test_three_processes_and_a_second_host_answer(scale: Scale) -> None:
    """``--processes 3`` runs three distinct processes on one port (none of them the parent)."""
    multi = scale.cluster.multi
    pids = multi.processes_answering(3)
    assert len(pids) == 3 and str(multi.process.pid) not in pids
    single = scale.cluster.single.processes_answering(1)
    assert single.isdisjoint(pids)
    for base in scale.cluster.bases:
        assert httpx.get(base + "/readyz").json() == {"status": "ready", "database": "ok"}


def test_every_process_accepts_on_the_sites_mllp_port(scale: Scale) -> None:
    """Each of the three processes listens on each site's MLLP port (SO_REUSEPORT); a site's messages,
    on connections of their own, are all answered."""
    log = scale.cluster.multi.log.read_text()
    for site, port in scale.inbound.items():
        assert log.count(f"inbound mllp listener for site {site} on 127.0.0.1:{port}") == 3, log[-3000:]
    codes = []
    for n in range(6):
        with Site(scale.inbound["site-a"]) as site:
            acks = site.send(message("oml-o21-cancel", "NO-SUCH-ORDER", f"SCALE-IN-{n}"), answers=2)
        codes.append([ack_code(a) for a in acks])
    assert codes == [codes[0]] * 6 and codes[0][0] == "CA", codes  # all answered alike (commit ACK first)


def _intake_accepted(text: str) -> float:
    """``cgt_intake_requests_total{kind="order",outcome="accepted"}`` in a /metrics text (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("cgt_intake_requests_total{") and 'kind="order"' in line and \
                'outcome="accepted"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_the_requests_of_every_process(scale: Scale) -> None:
    """A scrape reaches one process, yet counts what all three answered (prometheus_client's
    multiprocess mode): after five orders created through the three-process port, every process's
    /metrics shows the same count, five more than before."""
    multi = scale.cluster.multi

    def scrape_each() -> dict[str, float]:
        by_process: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while len(by_process) < 3:
            assert time.monotonic() < deadline, by_process
            answer = httpx.get(multi.base + "/metrics", headers={"Connection": "close"}, timeout=10)
            by_process[answer.headers["x-cgt-process"]] = _intake_accepted(answer.text)
        return by_process

    before = set(scrape_each().values())
    assert len(before) == 1
    for n in range(5):
        order, _ = journey(f"METRICS-{n}", 600 + n)
        assert post(multi.base, "/v1/orders", order).status_code == 201
    assert set(scrape_each().values()) == {before.pop() + 5}


# ----------------------------------------------------------------------------- a. the watermark poller


def test_a_watermark_poller_sees_exactly_the_task_versions_that_exist(scale: Scale) -> None:
    """fhirpy's AsyncFHIRClient walks ``_lastUpdated=gt<watermark>`` (``_sort=_lastUpdated``, pages of
    7) on the three-process port, as an EHR polls, while journeys are posted to every process.  It
    never gets a version twice and ends with the current version of every Task; a ``_history``
    walk gives exactly the Task versions stored."""
    done = threading.Event()
    posted: dict[str, list[str]] = {}

    def writer() -> None:
        try:
            posted.update(_post_journeys(scale, "POLL-", 100, 4, events=6))
        finally:
            done.set()

    async def poll() -> tuple[list[tuple[str, str]], set[tuple[str, str]]]:
        client = AsyncFHIRClient(scale.cluster.multi.base + "/fhir", authorization="Bearer demo-site-a-token")
        received: list[tuple[str, str]] = []
        watermark: str | None = None
        quiet = 0
        while quiet < 2:
            finished = done.is_set()
            search = client.resources("Task").sort("_lastUpdated").limit(7)
            if watermark is not None:
                search = search.search(_lastUpdated=f"gt{watermark}")
            new = 0
            async for task in search:
                received.append((task["id"], task["meta"]["versionId"]))
                watermark = max(watermark or "", task["meta"]["lastUpdated"])
                new += 1
            quiet = quiet + 1 if finished and new == 0 else 0
            await asyncio.sleep(0.05)
        history: set[tuple[str, str]] = set()
        bundle = await client.execute("Task/_history", method="get", params={"_count": "100"})
        while True:
            history |= {(e["resource"]["id"], e["resource"]["meta"]["versionId"])
                        for e in bundle.get("entry", [])}
            url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
            if url is None:
                return received, history
            bundle = await client.execute(url, method="get")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        received, history = asyncio.run(poll())
    finally:
        thread.join()
    assert len(posted) == 4
    with scale.engine.connect() as conn:
        versions = {(r, str(v)) for r, v in conn.execute(
            sa.select(_V.c.resource_id, _V.c.version_id).where(_V.c.resource_type == "Task",
                                                                _V.c.site_id == "site-a"))}
        tasks = {r for r, _ in versions}
        current = {r: str(v) for r, v in conn.execute(sa.select(_C.c.resource_id, _C.c.version_id).where(
            _C.c.resource_type == "Task", _C.c.resource_id.in_(tasks)))}
        ours = {r for (r,) in conn.execute(sa.select(_V.c.resource_id).where(
            _V.c.resource_type == "Task", _V.c.order_id.in_(posted)))}
    assert len(received) == len(set(received)), "a version was delivered twice"
    assert set(received) <= versions  # nothing that does not exist
    latest: dict[str, str] = {}
    for resource_id, version in received:
        latest[resource_id] = max(latest.get(resource_id, "0"), version, key=int)
    assert latest == current  # nothing missed: every Task at its current version
    assert ours and ours <= set(latest)
    assert history == versions  # every version, once
    assert len({v for r, v in versions if r in ours}) > 1  # the journeys made new versions


# ----------------------------------------------------------------------------- b. identical creates


def test_b_16_identical_creates_and_events_across_processes_give_one(scale: Scale) -> None:
    """16 identical POST /v1/orders at once, spread over the four server processes: one 201, fifteen
    200 with the same order; then 16 identical events the same way: one 201, fifteen 200, one event."""
    order, bodies = journey("RACE-16", 200)
    barrier = threading.Barrier(16)

    def create(i: int, path: str, body: dict) -> tuple[int, str, str]:
        barrier.wait()
        answer = post(_spread(scale, i), path, body)
        return answer.status_code, answer.headers["x-cgt-process"], answer.text

    results = run_threads([lambda i=i: create(i, "/v1/orders", order) for i in range(16)])
    assert Counter(status for status, _, _ in results) == {201: 1, 200: 15}, results
    assert len({pid for _, pid, _ in results}) >= 3  # answered by several processes
    results = run_threads([lambda i=i: create(i, "/v1/orders/RACE-16/events", bodies[0]) for i in range(16)])
    assert Counter(status for status, _, _ in results) == {201: 1, 200: 15}, results
    assert len({pid for _, pid, _ in results}) >= 3
    control, control_bodies = journey("RACE-CONTROL", 201)  # the same, posted once
    assert post(scale.cluster.multi.base, "/v1/orders", control).status_code == 201
    answer = post(scale.cluster.multi.base, "/v1/orders/RACE-CONTROL/events", control_bodies[0])
    assert answer.status_code == 201
    with scale.engine.connect() as conn:
        orders = conn.execute(sa.select(sa.func.count()).select_from(_O)
                              .where(_O.c.order_id == "RACE-16")).scalar()
        events = {o: Counter(conn.execute(sa.select(_E.c.type).join(_O, _O.c.id == _E.c.order_pk)
                                          .where(_O.c.order_id == o)).scalars())
                  for o in ("RACE-16", "RACE-CONTROL")}
        outbox = {o: Counter(conn.execute(sa.select(_M.c.message_type).where(_M.c.order_id == o)).scalars())
                  for o in ("RACE-16", "RACE-CONTROL")}
        versions = {o: conn.execute(sa.select(sa.func.count()).select_from(_V)
                                    .where(_V.c.order_id == o)).scalar()
                    for o in ("RACE-16", "RACE-CONTROL")}
    assert orders == 1
    assert events["RACE-16"] == events["RACE-CONTROL"] and sum(events["RACE-16"].values()) == 2  # placed + 1
    assert outbox["RACE-16"] == outbox["RACE-CONTROL"] and outbox["RACE-16"]  # one set of messages
    assert versions["RACE-16"] == versions["RACE-CONTROL"] > 0  # one set of FHIR versions


# ----------------------------------------------------------------------------- c. FIFO per destination


def _all_delivered(engine: Engine, orders: list[str]) -> bool:
    with engine.connect() as conn:
        return not conn.execute(sa.select(_M.c.id).where(_M.c.order_id.in_(orders), _M.c.state != "delivered")
                                .limit(1)).first()


def test_c_each_destination_gets_its_messages_in_order_with_many_processes_and_workers(scale: Scale) -> None:
    """Journeys for site-a and site-b posted across the processes; six delivery workers (one per
    server process, two standalone) share the queues.  Each peer receives every message of its
    destination exactly once, each order's messages in outbox order and so in its events' order;
    never two at once on one destination."""
    before = {site: len(peer.received) for site, peer in scale.peers.items()}
    posted = _post_journeys(scale, "FIFO-", 300, 4, site_of=lambda k: ("site-a", "site-b")[k % 2],
                            events=6)
    deadline = time.monotonic() + 60
    while not _all_delivered(scale.engine, list(posted)):
        assert time.monotonic() < deadline, "not delivered within 60 s"
        time.sleep(0.1)
    with scale.engine.connect() as conn:
        rows = conn.execute(sa.select(_M.c.destination, _M.c.control_id, _M.c.order_id, _M.c.event_id)
                            .where(_M.c.channel == "mllp").order_by(_M.c.id)).all()
        workers = conn.execute(sa.text(
            "SELECT count(DISTINCT a.worker_id) FROM delivery_attempt a JOIN outbox_message m "
            "ON m.id = a.message_id WHERE m.order_id LIKE 'FIFO-%'")).scalar()
    event_of = {row.control_id: (row.order_id, row.event_id) for row in rows}
    for site, peer in scale.peers.items():
        queued = [row.control_id for row in rows if row.destination == f"{site}/mllp"]
        arrived = peer.received[before[site]:]
        # every message once (earlier tests' too).  Across orders the arrival order is the commit order,
        # which outbox ids do not follow when transactions in several processes overlap (an id is taken
        # at the insert, before the commit); within an order, which its row lock serialises, it is the
        # outbox order: FIFO where it means something, checked below
        assert len(set(peer.received)) == len(peer.received), site
        assert sorted(peer.received) == sorted(queued), site
        position = {control_id: k for k, control_id in enumerate(queued)}
        for order_id in {event_of[c][0] for c in peer.received}:
            mine = [c for c in peer.received if event_of[c][0] == order_id]
            assert mine == sorted(mine, key=position.__getitem__), (site, order_id)
        assert peer.overlaps == 0, site
        for order_id, event_ids in posted.items():
            in_arrival = [event_of[c][1] for c in arrived if event_of[c][0] == order_id]
            if (site == "site-a") != (int(order_id.split("-")[1]) % 2 == 0):
                assert not in_arrival
                continue
            # the order's placement, then its events, each event's messages together
            assert list(dict.fromkeys(in_arrival)) == [f"{order_id}:placed", *event_ids], (site, order_id)
    assert workers >= 2  # the queues changed hands between workers


# ----------------------------------------------------------------------------- d. SIGKILL mid-request


def test_d_a_server_process_killed_mid_request_loses_nothing_it_accepted(scale: Scale) -> None:
    """Three journeys are posted, each on a kept-alive connection of its own to the three-process port;
    the process answering the first one is SIGKILLed while requests are in flight.  Every event
    answered 2xx is stored with its FHIR versions and outbox rows; an unanswered one was either stored
    whole or not at all, and posting it again is answered 200 (it was stored) or 201 (it was not);
    uvicorn's parent replaces the killed process."""
    multi = scale.cluster.multi
    victim: list[str] = []
    chosen = threading.Event()
    outcomes: dict[str, tuple[str, int | None, int | None]] = {}  # event_id -> (order, first, re-post)
    lock = threading.Lock()

    def send(client: httpx.Client, order_id: str, path: str, body: dict, key: str) -> httpx.Response:
        try:
            answer: httpx.Response | None = client.post(path, json=body)
        except httpx.TransportError:
            answer = None
        again = None
        if answer is None:  # unanswered: post it again (a new connection, most likely another process)
            again = post(multi.base, path, body)
        with lock:
            outcomes[key] = (order_id, None if answer is None else answer.status_code,
                             None if again is None else again.status_code)
        result = answer if answer is not None else again
        assert result is not None and result.status_code in (200, 201), result.text if result else None
        return result

    def one(k: int) -> None:
        order_id = f"KILL-{k}"
        order, bodies = journey(order_id, 400 + k, events=10)
        with httpx.Client(base_url=multi.base, headers=ACME, timeout=30) as client:
            answer = send(client, order_id, "/v1/orders", order, f"{order_id}:placed")
            if k == 0:
                victim.append(answer.headers["x-cgt-process"])
                chosen.set()
            for body in bodies:
                send(client, order_id, f"/v1/orders/{order_id}/events", body, body["event_id"])

    def killer() -> None:
        assert chosen.wait(60)
        time.sleep(0.3)  # the journeys are under way
        os.kill(int(victim[0]), signal.SIGKILL)

    run_threads([*(lambda k=k: one(k) for k in range(3)), killer])
    unanswered = {e: o for e, o in outcomes.items() if o[1] is None}
    assert all(o[1] == 201 for e, o in outcomes.items() if e not in unanswered), outcomes
    assert unanswered, "the kill interrupted no request"  # it did hit requests in flight
    assert all(o[2] in (200, 201) for o in unanswered.values()), unanswered
    control, control_bodies = journey("KILL-CONTROL", 499, events=10)  # the same, never interrupted
    assert post(multi.base, "/v1/orders", control).status_code == 201
    for body in control_bodies:
        assert post(multi.base, "/v1/orders/KILL-CONTROL/events", body).status_code == 201
    with scale.engine.connect() as conn:
        stored = {e: (o, s) for e, o, s in conn.execute(
            sa.select(_E.c.event_id, _O.c.order_id, _E.c.sequence).join(_O, _O.c.id == _E.c.order_pk)
            .where(_O.c.order_id.like("KILL-%")))}
        last = dict(conn.execute(sa.select(_O.c.order_id, _O.c.last_sequence)
                                 .where(_O.c.order_id.like("KILL-%"))).all())
        outbox = conn.execute(sa.select(_M.c.order_id, _M.c.event_id, _M.c.message_type)
                              .where(_M.c.order_id.like("KILL-%"))).all()
        versions = Counter(conn.execute(sa.select(_V.c.order_id)
                                        .where(_V.c.order_id.like("KILL-%"))).scalars())
    assert set(outcomes) <= set(stored)  # answered 2xx, or posted again: stored
    assert len(stored) == 4 * 11  # and once: three journeys and the control, 11 writes each
    for order_id, last_sequence in last.items():  # no gap
        sequences = sorted(s for o, s in stored.values() if o == order_id)
        assert sequences == list(range(11)) and last_sequence == 10, order_id

    def messages_of(order_id: str) -> Counter[tuple[str, str]]:
        return Counter(((e or "").removeprefix(order_id), t) for o, e, t in outbox if o == order_id)

    # nothing half-written, nothing twice: each journey has exactly the control's messages and versions
    for k in range(3):
        assert messages_of(f"KILL-{k}") == messages_of("KILL-CONTROL"), k
        assert versions[f"KILL-{k}"] == versions["KILL-CONTROL"] > 0, k
    # the parent replaced the killed process: three answer again, the victim not among them
    multi.seen.clear()
    assert victim[0] not in multi.processes_answering(3)


# ----------------------------------------------------------------------------- graceful stop (last)


def test_z_sigterm_to_the_parent_stops_every_process_gracefully(scale: Scale) -> None:
    """SIGTERM to ``serve --processes 3``: each child finishes (its delivery worker stops and gives its
    leases back, its MLLP listeners close, its audit trail is flushed and the chain head logged), then
    the parent exits 0."""
    multi = scale.cluster.multi
    pids = multi.processes_answering(3)
    assert multi.stop(signal.SIGTERM) == 0
    log = multi.log.read_text()
    after = log[log.rindex("Received SIGTERM"):]
    for pid in pids:
        assert f"Finished server process [{pid}]" in after, after[-3000:]
        assert any("delivery worker stopped" in line and f":{pid}:" in line for line in after.splitlines())
        assert not Path(f"/proc/{pid}").exists()
    assert after.count('"msg":"delivery worker stopped"') == 3
    assert after.count('"msg":"audit chain head"') == 3
    assert after.count('"msg":"mllp listener stopped"') == 3 * len(scale.inbound)
    with scale.engine.connect() as conn:
        owners = conn.execute(sa.text("SELECT owner FROM destination_lease")).scalars().all()
    assert not [o for o in owners if o.split(":")[1] in pids]  # no lease left by a stopped process
