"""FHIR Subscriptions (issue 16) end to end: a real loopback HTTP receiver as the EHR, the real
delivery worker over the outbox, the demo configuration, both databases."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from gateway.bootstrap import create_app
from gateway.config import DEMO_CONFIG, load_settings
from gateway.delivery.destinations import subscription_destination
from gateway.delivery.outbox import has_pending
from gateway.delivery.senders import build_delivery_worker
from gateway.subscriptions.heartbeat import HeartbeatScheduler
from tests.conftest import ADMIN, SITE_A, SITE_B, FakeClock
from tests.integration.site_request_support import JOURNEY, T0, advance_to, place
from tests.integration.subscription_support import (
    Receiver,
    event_numbers,
    subscription_body,
    validate_r4b,
)
from tests.integration.test_delivery_support import FAST, wait_until

FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _client(engine: Engine, clock: FakeClock, **overrides: object) -> TestClient:
    settings = load_settings(
        DEMO_CONFIG,
        database_url=engine.url.render_as_string(hide_password=False),
        public_base_url="http://testserver",
        **overrides,
    )
    return TestClient(create_app(settings, engine=engine, now=clock), raise_server_exceptions=False)


@pytest.fixture
def run_worker(engine: Engine) -> Iterator[Callable[[TestClient], None]]:
    stops: list[Callable[[], None]] = []

    def run(client: TestClient) -> None:
        settings = client.app.state.context.settings  # type: ignore[attr-defined]
        stops.append(build_delivery_worker(settings, engine, worker_settings=FAST).run_in_thread())

    yield run
    for stop in stops:
        stop()


def _subscribe(client: TestClient, body: dict, headers: dict = SITE_A) -> dict:
    response = client.post("/fhir/Subscription", json=body, headers={**headers, **FHIR})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "requested"
    validate_r4b(created)
    return created


def test_handshake_events_outage_backfill_and_delete(
    engine: Engine, receiver: Receiver, run_worker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock(T0)
    with _client(engine, clock, subscription_max_failures=1000) as client:
        place(client, clock)
        created = _subscribe(client, subscription_body(receiver.url, content="full-resource"))
        sid = created["id"]
        run_worker(client)
        wait_until(lambda: receiver.of_type("handshake"), "the handshake")
        handshake = receiver.of_type("handshake")[0]
        validate_r4b(handshake)
        assert handshake["type"] == "history"
        wait_until(
            lambda: client.get(f"/fhir/Subscription/{sid}", headers=SITE_A).json()["status"] == "active",
            "active after the handshake",
        )

        advance_to(client, clock, JOURNEY[0][0])  # one event: the order's Task changes status
        wait_until(lambda: receiver.of_type("event-notification"), "the first notification")
        first = receiver.of_type("event-notification")
        assert len(first) == 1 and event_numbers(first[0]) == [1]
        validate_r4b(first[0])
        assert first[0]["entry"][1]["resource"]["resourceType"] == "Task"  # full-resource
        params = {p["name"]: p for p in first[0]["entry"][0]["resource"]["parameter"]}
        assert params["events-since-subscription-start"]["valueString"] == "1"

        receiver.up = False  # the EHR is down: three more changes queue up, the first retried
        for _ in range(3):
            advance_to_next(client, clock)
        wait_until(lambda: receiver.refused >= 3, "retries while down")
        receiver.up = True
        wait_until(
            lambda: len(receiver.of_type("event-notification")) >= 4, "every notification after the outage"
        )
        numbers = [n for b in receiver.of_type("event-notification") for n in event_numbers(b)]
        assert numbers == [1, 2, 3, 4]  # in order, no gaps, none twice

        status = client.get(f"/fhir/Subscription/{sid}/$status", headers=SITE_A)
        assert status.status_code == 200
        validate_r4b(status.json())
        events = client.get(
            f"/fhir/Subscription/{sid}/$events?eventsSinceNumber=2&eventsUntilNumber=3", headers=SITE_A
        )
        assert events.status_code == 200, events.text
        validate_r4b(events.json())
        assert event_numbers(events.json()) == [2, 3]
        assert [e["resource"]["resourceType"] for e in events.json()["entry"][1:]] == ["Task", "Task"]

        assert client.get(f"/fhir/Subscription/{sid}", headers=SITE_B).status_code == 404  # another site's
        assert client.get(f"/fhir/Subscription/{sid}/$events", headers=SITE_B).status_code == 404
        listed = client.get("/fhir/Subscription", headers=SITE_A).json()
        assert [e["resource"]["id"] for e in listed["entry"]] == [sid]
        assert client.get("/fhir/Subscription", headers=SITE_B).json()["total"] == 0

        assert client.delete(f"/fhir/Subscription/{sid}", headers=SITE_A).status_code == 204
        assert client.get(f"/fhir/Subscription/{sid}", headers=SITE_A).json()["status"] == "off"
        advance_to_next(client, clock)
        after = client.get(f"/fhir/Subscription/{sid}/$status", headers=SITE_A).json()
        counted = {p["name"]: p for p in after["entry"][0]["resource"]["parameter"]}
        assert counted["events-since-subscription-start"]["valueString"] == "4"  # nothing counted when off
        assert counted["status"]["valueCode"] == "off"
    assert len(receiver.of_type("event-notification")) == 4
    logged = " ".join(r.getMessage() + str(r.__dict__) for r in caplog.records)
    for phi in ("Zyxwvut", "Quillon", "MRN-0042", "1971-03-09"):
        assert phi not in logged


_STEP: dict[int, int] = {}


def advance_to_next(client: TestClient, clock: FakeClock, order_id: str = "ORD-1") -> None:
    """Post the order's next journey event (the journey in site_request_support, one at a time)."""
    from tests.conftest import ACME, event_body
    from tests.integration.site_request_support import iso

    key = id(client)
    n = _STEP.get(key, 1)
    _STEP[key] = n + 1
    _, event_type, data = JOURNEY[n]
    now = clock.advance(hours=1)
    response = client.post(
        f"/v1/orders/{order_id}/events",
        json=event_body(f"{order_id}-E{n}", event_type, iso(now), data(now)),
        headers=ACME,
    )
    assert response.status_code == 201, response.text


def _pending(engine: Engine, subscription_id: str) -> bool:
    with Session(engine) as session:
        return has_pending(session, subscription_destination(subscription_id))


def test_endpoint_not_allowed_is_refused(engine: Engine) -> None:
    clock = FakeClock(T0)
    with _client(engine, clock) as client:
        for endpoint in (
            "https://evil.example.com/hook",
            "http://127.0.0.1:80@evil.example.com/",
            "ftp://127.0.0.1:21/x",
            "http://127.0.0.1.evil.test/x",
            "http://user:pw@127.0.0.1:9/x",
        ):
            response = client.post(
                "/fhir/Subscription", json=subscription_body(endpoint), headers={**SITE_A, **FHIR}
            )
            assert response.status_code == 422, endpoint
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["expression"] == ["Subscription.channel.endpoint"]
            assert "evil" not in outcome["issue"][0]["diagnostics"]
            validate_r4b(outcome)
        bad_topic = client.post(
            "/fhir/Subscription",
            json={**subscription_body("http://127.0.0.1:9/x"), "criteria": "Task?status=completed"},
            headers={**SITE_A, **FHIR},
        )
        assert bad_topic.status_code == 422
        assert bad_topic.json()["issue"][0]["expression"] == ["Subscription.criteria"]
        admin = client.post(
            "/fhir/Subscription", json=subscription_body("http://127.0.0.1:9/x"), headers={**ADMIN, **FHIR}
        )
        assert admin.status_code == 422 and admin.json()["issue"][0]["expression"] == [
            "Subscription.extension"
        ]
        manufacturer = client.post(
            "/fhir/Subscription",
            json=subscription_body("http://127.0.0.1:9/x"),
            headers={"Authorization": "Bearer demo-acme-token", **FHIR},
        )
        assert manufacturer.status_code == 403


def test_heartbeats_on_schedule_with_an_injected_clock(
    engine: Engine, receiver: Receiver, run_worker
) -> None:
    clock = FakeClock(T0)
    with _client(engine, clock, subscription_min_heartbeat_s=1) as client:
        created = _subscribe(client, subscription_body(receiver.url, heartbeat_s=60))
        settings = client.app.state.context.settings  # type: ignore[attr-defined]
        run_worker(client)
        wait_until(
            lambda: (
                client.get(f"/fhir/Subscription/{created['id']}", headers=SITE_A).json()["status"] == "active"
            ),
            "active",
        )
        scheduler = HeartbeatScheduler(engine, settings, clock=clock)
        assert scheduler.tick() == 0  # not due yet
        clock.advance(seconds=59)
        assert scheduler.tick() == 0
        clock.advance(seconds=1)
        assert scheduler.tick() == 1
        assert (
            HeartbeatScheduler(engine, settings, clock=clock).tick() == 0
        )  # a second scheduler: no duplicate
        wait_until(lambda: len(receiver.of_type("heartbeat")) == 1, "the first heartbeat")
        wait_until(lambda: not _pending(engine, created["id"]), "the first heartbeat recorded as delivered")
        clock.advance(seconds=60)
        assert scheduler.tick() == 1
        wait_until(lambda: len(receiver.of_type("heartbeat")) == 2, "the second heartbeat")
        for beat in receiver.of_type("heartbeat"):
            validate_r4b(beat)
            assert len(beat["entry"]) == 1


def test_failures_in_a_row_put_the_subscription_in_error(
    engine: Engine, receiver: Receiver, run_worker
) -> None:
    clock = FakeClock(T0)
    receiver.up, receiver.down_status = False, 500
    with _client(engine, clock, subscription_max_failures=3) as client:
        created = _subscribe(client, subscription_body(receiver.url))
        run_worker(client)

        def errored() -> bool:
            return (
                client.get(f"/fhir/Subscription/{created['id']}", headers=SITE_A).json()["status"] == "error"
            )

        wait_until(errored, "error after three failures")
        resource = client.get(f"/fhir/Subscription/{created['id']}", headers=SITE_A).json()
        assert "3 deliveries in a row failed" in resource["error"] and "HTTP 500" in resource["error"]
        assert receiver.refused == 3


def test_handshake_refused_is_an_error(engine: Engine, receiver: Receiver, run_worker) -> None:
    clock = FakeClock(T0)
    receiver.up, receiver.down_status = False, 404
    with _client(engine, clock) as client:
        created = _subscribe(client, subscription_body(receiver.url))
        run_worker(client)
        wait_until(
            lambda: (
                client.get(f"/fhir/Subscription/{created['id']}", headers=SITE_A).json()["status"] == "error"
            ),
            "error after a refused handshake",
        )
        assert (
            "handshake refused (HTTP 404)"
            in client.get(f"/fhir/Subscription/{created['id']}", headers=SITE_A).json()["error"]
        )


def test_topics_are_advertised_and_resolvable(engine: Engine) -> None:
    clock = FakeClock(T0)
    with _client(engine, clock) as client:
        metadata = client.get("/fhir/metadata").json()
        validate_r4b(metadata)
        subscription = next(r for r in metadata["rest"][0]["resource"] if r["type"] == "Subscription")
        urls = [e["valueCanonical"] for e in subscription["extension"]]
        assert [u.rsplit("/", 1)[1] for u in urls] == ["task-status", "site-request", "order-alert"]
        for url in urls:
            code = url.rsplit("/", 1)[1]
            for path in (f"/fhir/Basic/{code}", f"/fhir/SubscriptionTopic/{code}"):
                topic = client.get(path, headers=SITE_A)
                assert topic.status_code == 200
                validate_r4b(topic.json())
                assert topic.json()["extension"][0]["valueUri"] == url
        assert client.get("/fhir/Basic?code=SubscriptionTopic", headers=SITE_B).json()["total"] == 3
        assert client.get("/fhir/Basic/nope", headers=SITE_A).status_code == 404
