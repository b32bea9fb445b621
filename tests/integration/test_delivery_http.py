"""The real DeliveryWorker over a real database pushing FHIR transaction Bundles and signed webhooks
through an injected ``httpx.MockTransport``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta

import httpx
import orjson
import pytest
from sqlalchemy.engine import Engine

from adapters.http.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, verify_signature
from gateway.delivery.outbox import MessageState
from gateway.delivery.senders import DestinationSenders, WebhookTarget
from gateway.delivery.worker import DeliveryWorker
from tests.integration.test_delivery_support import (
    FAST,
    alerts,
    all_finished,
    attempts,
    enqueue_raw,
    messages,
    site_profile,
    wait_until,
)

FHIR_BASE = "https://fhir.site-a.example.org/r4"
HOOK_URL = "https://hooks.acme-bio.example.com/cgt?key=abc"
SECRET = "whsec-test-0123456789"


def bundle(bundle_id: str) -> str:
    return orjson.dumps({"resourceType": "Bundle", "id": bundle_id, "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Task", "id": "t1", "status": "requested",
                                               "intent": "order"},
         "request": {"method": "PUT", "url": "Task/t1"}}]}).decode()


class Script:
    """Answers requests in turn (then 200), recording each one."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0) if self.answers else httpx.Response(200, json={"resourceType": "Bundle"})
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.fixture
def run_worker(engine: Engine) -> Iterator[Callable[[Script], None]]:
    stops: list[Callable[[], None]] = []

    def run(script: Script) -> None:
        profile = site_profile(fhir_url=FHIR_BASE, auth={"type": "bearer", "token_env": "SITE_A_TOKEN"})
        senders = DestinationSenders(
            {"site-a": profile},
            {"acme-bio": WebhookTarget(url=HOOK_URL, secret=SECRET)},
            environ={"SITE_A_TOKEN": "push-token-1"}, http_transport=httpx.MockTransport(script))
        worker = DeliveryWorker(engine, senders, settings=FAST, close_senders=senders.aclose,
                                alert_after=senders.alert_after)
        stops.append(worker.run_in_thread())

    yield run
    for stop in stops:
        stop()


def test_503_then_429_with_retry_after_then_200_is_delivered_once(engine, run_worker) -> None:
    script = Script(httpx.Response(503, text="maintenance"),
                    httpx.Response(429, headers={"Retry-After": "1"}, text="slow down"))
    enqueue_raw(engine, "site-a/fhir", "fhir", [("B-1", bundle("B-1")), ("B-2", bundle("B-2"))],
                content_type="application/fhir+json", message_type="transaction")
    run_worker(script)
    wait_until(lambda: all_finished(engine), "pushed")
    b1, b2 = messages(engine)
    assert b1.state == b2.state == MessageState.delivered
    tried = attempts(engine, b1.id)
    assert [(a.outcome, a.http_status) for a in tried] == [("retry", 503), ("retry", 429), ("delivered", 200)]
    assert tried[2].attempted_at - tried[1].attempted_at >= timedelta(seconds=1)  # Retry-After honoured
    assert [orjson.loads(r.content)["id"] for r in script.requests] == ["B-1", "B-1", "B-1", "B-2"]
    request = script.requests[0]
    assert str(request.url) == FHIR_BASE and request.method == "POST"
    assert request.headers["content-type"] == "application/fhir+json"
    assert request.headers["authorization"] == "Bearer push-token-1"


def test_400_dead_letters_with_the_body_kept_and_the_queue_moves_on(engine, run_worker) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid",
                                                              "diagnostics": "Task.status is required"}]}
    script = Script(httpx.Response(400, json=outcome), httpx.ConnectError("refused"))
    enqueue_raw(engine, "site-a/fhir", "fhir", [("B-1", bundle("B-1")), ("B-2", bundle("B-2"))],
                content_type="application/fhir+json", message_type="transaction")
    run_worker(script)
    wait_until(lambda: all_finished(engine), "queue finished")
    b1, b2 = messages(engine)
    assert b1.state == MessageState.dead and "Task.status is required" in (b1.last_detail or "")
    assert [(a.outcome, a.http_status) for a in attempts(engine, b1.id)] == [("dead", 400)]
    assert b2.state == MessageState.delivered
    tried = attempts(engine, b2.id)
    assert [(a.outcome, a.http_status) for a in tried] == [("retry", None), ("delivered", 200)]
    [alert] = alerts(engine)
    assert alert.kind == "dead-letter" and "Task.status is required" in alert.detail


def test_webhooks_are_signed_over_the_exact_body_and_carry_the_delivery_id(engine, run_worker) -> None:
    body = orjson.dumps({"type": "order.status", "order_id": "ORD-1", "status": "in-manufacturing"}).decode()
    script = Script(httpx.Response(500))
    enqueue_raw(engine, "acme-bio/webhook", "webhook", [("D-1", body)], content_type="application/json",
                message_type="order.status")
    run_worker(script)
    wait_until(lambda: all_finished(engine), "webhook delivered")
    assert messages(engine)[0].state == MessageState.delivered
    assert len(script.requests) == 2
    for request in script.requests:
        assert str(request.url) == HOOK_URL
        assert request.content == body.encode()
        assert request.headers[DELIVERY_HEADER] == "D-1"  # the same id on the resend: receivers dedupe
        assert verify_signature(SECRET, request.content, request.headers[SIGNATURE_HEADER])
        assert not verify_signature("another-secret", request.content, request.headers[SIGNATURE_HEADER])
        assert not verify_signature(SECRET, request.content + b" ", request.headers[SIGNATURE_HEADER])


def test_oauth2_client_credentials_token_is_fetched_once_and_sent(engine) -> None:
    token_url = "https://auth.site-a.example.org/token"
    script = Script()

    def handler(request: httpx.Request) -> httpx.Response:
        if str(request.url) == token_url:
            script.requests.append(request)
            return httpx.Response(200, json={"access_token": "tok-42", "expires_in": 3600})
        return script(request)

    auth = {"type": "oauth2_client_credentials", "token_url": token_url, "client_id": "cgt-gateway",
            "client_secret_env": "SITE_A_SECRET", "scope": "system/Task.write"}
    senders = DestinationSenders({"site-a": site_profile(fhir_url=FHIR_BASE, auth=auth)},
                                 environ={"SITE_A_SECRET": "s3cret"},
                                 http_transport=httpx.MockTransport(handler))
    enqueue_raw(engine, "site-a/fhir", "fhir", [("B-1", bundle("B-1")), ("B-2", bundle("B-2"))],
                content_type="application/fhir+json", message_type="transaction")
    stop = DeliveryWorker(engine, senders, settings=FAST, close_senders=senders.aclose).run_in_thread()
    try:
        wait_until(lambda: all_finished(engine), "pushed")
    finally:
        stop()
    assert [str(r.url) for r in script.requests] == [token_url, FHIR_BASE, FHIR_BASE]  # one token, reused
    assert b"grant_type=client_credentials" in script.requests[0].content
    assert b"s3cret" not in script.requests[1].content
    assert all(r.headers["authorization"] == "Bearer tok-42" for r in script.requests[1:])
