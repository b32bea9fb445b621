"""FHIR push and webhook senders over an injected httpx transport (respx router, no globals patched)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import httpx
import orjson
import pytest
import respx

from adapters.delivery_result import DeliveryOutcome
from adapters.http.auth import BearerToken, ClientCredentials, ClientCredentialsAuth
from adapters.http.fhir_push import FhirPushSender
from adapters.http.webhook import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    WebhookSender,
    sign_body,
    verify_signature,
)
from adapters.retry import RetryPolicy

FHIR = "https://fhir.site-a.example.org/r4"
TOKEN_URL = "https://auth.site-a.example.org/token"
HOOK = "https://hooks.acme-bio.example.com/cgt?key=abc"
NOW = datetime(2026, 11, 21, 12, 0, 0, tzinfo=UTC)
BUNDLE: dict[str, Any] = {
    "resourceType": "Bundle", "id": "b1", "type": "transaction",
    "entry": [{"resource": {"resourceType": "Task", "id": "t1", "status": "requested"},
               "request": {"method": "PUT", "url": "Task/t1"}}],
}
POLICY = RetryPolicy(initial_s=0.5, max_delay_s=10, jitter_s=0.0, max_attempts=5)


def run(coro: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro())


def client_for(router: respx.Router) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(router.async_handler))


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def test_503_then_429_with_retry_after_then_200_is_delivered_once() -> None:
    async def scenario() -> None:
        router = respx.Router()
        route = router.post(FHIR).mock(side_effect=[
            httpx.Response(503, text="maintenance"),
            httpx.Response(429, headers={"Retry-After": "7"}, text="slow down"),
            httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response"}),
        ])
        async with client_for(router) as client:
            sender = FhirPushSender(FHIR, client, auth=BearerToken("tok"), now=lambda: NOW)
            sleeps, attempts = Sleeps(), []
            outcome = await POLICY.run(lambda: sender.push(BUNDLE), sleep=sleeps,
                                       on_attempt=lambda n, o: attempts.append(o))
        assert outcome.status == "delivered" and outcome.http_status == 200
        assert [(a.status, a.http_status) for a in attempts] == [
            ("retry", 503), ("retry", 429), ("delivered", 200)]
        assert attempts[0].detail == "HTTP 503: maintenance"
        assert attempts[1].retry_after_s == 7.0
        assert sleeps.delays == [0.5, 7.0]  # backoff, then the server's Retry-After (longer than 1.0)
        assert route.call_count == 3
        request = route.calls.last.request
        assert request.headers["Authorization"] == "Bearer tok"
        assert request.headers["Content-Type"] == "application/fhir+json"
        assert orjson.loads(request.content) == BUNDLE
    run(scenario)


def test_retry_after_as_http_date_is_honoured() -> None:
    async def scenario() -> None:
        router = respx.Router()
        router.post(FHIR).mock(return_value=httpx.Response(
            503, headers={"Retry-After": "Sat, 21 Nov 2026 12:00:30 GMT"}))
        async with client_for(router) as client:
            outcome = await FhirPushSender(FHIR, client, now=lambda: NOW).push(BUNDLE)
        assert outcome.status == "retry" and outcome.retry_after_s == 30.0
    run(scenario)


@pytest.mark.parametrize("status", [400, 403, 404, 409, 410, 412, 422])
def test_other_4xx_is_dead_at_once_with_the_body_kept(status: int) -> None:
    async def scenario() -> None:
        router = respx.Router()
        body = '{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}'
        route = router.post(FHIR).mock(return_value=httpx.Response(status, text=body))
        async with client_for(router) as client:
            sender = FhirPushSender(FHIR, client)
            outcome = await POLICY.run(lambda: sender.push(BUNDLE), sleep=Sleeps())
        assert outcome.status == "dead" and outcome.http_status == status
        assert outcome.detail == f"HTTP {status}: {body}"
        assert route.call_count == 1
    run(scenario)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses(status: int) -> None:
    async def scenario() -> None:
        router = respx.Router()
        router.post(FHIR).mock(return_value=httpx.Response(status))
        async with client_for(router) as client:
            outcome = await FhirPushSender(FHIR, client).push(BUNDLE)
        assert outcome.status == "retry" and outcome.http_status == status and outcome.retry_after_s is None
    run(scenario)


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                 httpx.RemoteProtocolError("eof")])
def test_connection_errors_are_retryable(exc: Exception) -> None:
    async def scenario() -> None:
        router = respx.Router()
        router.post(FHIR).mock(side_effect=exc)
        async with client_for(router) as client:
            outcome = await FhirPushSender(FHIR, client).push(BUNDLE)
        assert outcome.status == "retry" and outcome.http_status is None
        assert outcome.detail is not None and type(exc).__name__ in outcome.detail
    run(scenario)


def test_unsupported_scheme_is_a_configuration_error_not_retried() -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            outcome = await FhirPushSender("ftp://fhir.example.org", client).push(BUNDLE)
        assert outcome.status == "dead"
    run(scenario)


def test_only_transaction_or_batch_bundles_are_pushed() -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient() as client:
            with pytest.raises(ValueError, match="transaction"):
                await FhirPushSender(FHIR, client).push({"resourceType": "Bundle", "type": "searchset"})
    run(scenario)


def _token_router(router: respx.Router, *, expires_in: int = 3600) -> respx.Route:
    tokens = iter(["tok-1", "tok-2", "tok-3"])
    return router.post(TOKEN_URL).mock(side_effect=lambda request: httpx.Response(
        200, json={"access_token": next(tokens), "token_type": "Bearer", "expires_in": expires_in}))


def test_oauth2_token_is_fetched_once_and_reused() -> None:
    async def scenario() -> None:
        router = respx.Router()
        token_route = _token_router(router)
        fhir_route = router.post(FHIR).mock(return_value=httpx.Response(200))
        async with client_for(router) as client:
            auth = ClientCredentialsAuth(ClientCredentials(TOKEN_URL, "gw", "s3cret", scope="system/*.write"),
                                         client)
            sender = FhirPushSender(FHIR, client, auth=auth)
            outcomes = await asyncio.gather(*(sender.push(BUNDLE) for _ in range(5)))
        assert all(o.delivered for o in outcomes)
        assert token_route.call_count == 1 and auth.fetches == 1
        assert {c.request.headers["Authorization"] for c in fhir_route.calls} == {"Bearer tok-1"}
        token_request = token_route.calls.last.request
        assert parse_qs(token_request.content.decode()) == {
            "grant_type": ["client_credentials"], "scope": ["system/*.write"]}
        assert token_request.headers["Authorization"] == "Basic " + base64.b64encode(b"gw:s3cret").decode()
    run(scenario)


def test_oauth2_token_is_refreshed_when_it_expires() -> None:
    async def scenario() -> None:
        now = [1000.0]
        router = respx.Router()
        token_route = _token_router(router, expires_in=60)
        fhir_route = router.post(FHIR).mock(return_value=httpx.Response(200))
        async with client_for(router) as client:
            credentials = ClientCredentials(TOKEN_URL, "gw", "s", auth_method="client_secret_post")
            auth = ClientCredentialsAuth(credentials, client, leeway_s=10, clock=lambda: now[0])
            sender = FhirPushSender(FHIR, client, auth=auth)
            await sender.push(BUNDLE)
            now[0] += 49  # still inside lifetime minus leeway
            await sender.push(BUNDLE)
            now[0] += 2
            await sender.push(BUNDLE)
        assert token_route.call_count == 2
        assert [c.request.headers["Authorization"] for c in fhir_route.calls] == [
            "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
        assert "client_secret=s" in token_route.calls.last.request.content.decode()
    run(scenario)


def test_401_gets_one_more_try_with_a_fresh_token() -> None:
    async def scenario() -> None:
        router = respx.Router()
        token_route = _token_router(router)
        router.post(FHIR).mock(side_effect=[httpx.Response(401), httpx.Response(200)])
        async with client_for(router) as client:
            auth = ClientCredentialsAuth(ClientCredentials(TOKEN_URL, "gw", "s"), client)
            outcome = await FhirPushSender(FHIR, client, auth=auth).push(BUNDLE)
        assert outcome.delivered and token_route.call_count == 2
    run(scenario)


@pytest.mark.parametrize("response, status", [
    (httpx.Response(401, json={"error": "invalid_client"}), "dead"),
    (httpx.Response(503), "retry"),
    (httpx.Response(200, json={"token_type": "Bearer"}), "retry"),
])
def test_token_endpoint_failures_are_classified(response: httpx.Response, status: str) -> None:
    async def scenario() -> None:
        router = respx.Router()
        router.post(TOKEN_URL).mock(return_value=response)
        fhir_route = router.post(FHIR).mock(return_value=httpx.Response(200))
        async with client_for(router) as client:
            auth = ClientCredentialsAuth(ClientCredentials(TOKEN_URL, "gw", "s"), client)
            outcome = await FhirPushSender(FHIR, client, auth=auth).push(BUNDLE)
        assert outcome.status == status and outcome.detail is not None
        assert outcome.detail.startswith("OAuth2 token endpoint")
        assert fhir_route.call_count == 0
    run(scenario)


def test_client_credentials_repr_hides_the_secret() -> None:
    assert "s3cret" not in repr(ClientCredentials(TOKEN_URL, "gw", "s3cret"))


def test_webhook_is_signed_over_the_raw_body_and_verifies() -> None:
    async def scenario() -> None:
        router = respx.Router()
        route = router.post(HOOK).mock(return_value=httpx.Response(204))
        async with client_for(router) as client:
            sender = WebhookSender(HOOK, "whsec-acme", client)
            outcome = await sender.send({"event": "order.shipped", "order_id": "o1"}, delivery_id="d-1")
        assert outcome.delivered and outcome.http_status == 204
        request = route.calls.last.request
        assert request.headers[DELIVERY_HEADER] == "d-1"
        signature = request.headers[SIGNATURE_HEADER]
        assert signature.startswith("sha256=") and len(signature) == 7 + 64
        assert verify_signature("whsec-acme", request.content, signature)
        assert sender.destination == "https://hooks.acme-bio.example.com/cgt"
    run(scenario)


def test_webhook_signature_fails_for_a_tampered_body_wrong_secret_or_bad_header() -> None:
    body = b'{"event":"order.shipped","order_id":"o1"}'
    signature = sign_body("whsec-acme", body)
    assert verify_signature("whsec-acme", body, signature)
    assert verify_signature(b"whsec-acme", body, signature)
    assert not verify_signature("whsec-acme", body.replace(b"o1", b"o2"), signature)
    assert not verify_signature("whsec-acme", body + b" ", signature)
    assert not verify_signature("other-secret", body, signature)
    assert not verify_signature("whsec-acme", body, signature.removeprefix("sha256="))
    assert not verify_signature("whsec-acme", body, None)
    assert not verify_signature("whsec-acme", body, "sha256=" + "0" * 64)
    with pytest.raises(ValueError):
        sign_body("", body)


def test_webhook_failures_are_classified() -> None:
    async def scenario() -> None:
        router = respx.Router()
        router.post(HOOK).mock(side_effect=[httpx.Response(500), httpx.Response(400, text="unknown order"),
                                            httpx.ConnectTimeout("slow")])
        async with client_for(router) as client:
            sender = WebhookSender(HOOK, "k", client)
            outcomes: list[DeliveryOutcome] = [await sender.send(b"{}") for _ in range(3)]
        assert [(o.status, o.http_status) for o in outcomes] == [
            ("retry", 500), ("dead", 400), ("retry", None)]
        assert outcomes[1].detail == "HTTP 400: unknown order"
    run(scenario)
