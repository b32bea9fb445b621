"""Destination name -> sender: the site profiles' ``delivery`` sections and the manufacturers' webhooks.

Destinations are ``<site>/mllp``, ``<site>/fhir`` (see :mod:`gateway.intake.pipeline`) and
``<manufacturer>/webhook``.  Each destination gets ONE sender, built on first use and reused, so an
MLLP destination keeps its persistent connection.  The HTTP senders share one ``httpx.AsyncClient``
(its transport is injectable for tests).  Secrets are named in the configuration by environment
variable and read here when the senders are built: a missing one refuses the start, naming the
variable, never a value.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import ssl
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session

from adapters.delivery_result import DeliveryOutcome
from adapters.http.auth import BearerToken, ClientCredentials, ClientCredentialsAuth
from adapters.http.fhir_push import FhirPushSender
from adapters.http.rest_hook import RestHookSender
from adapters.http.webhook import WebhookSender
from adapters.mllp.client import ConnectionFactory, MllpEndpoint, MllpSender
from gateway.audit.delivery import delivery_recorder
from gateway.config import Settings
from gateway.delivery import subscription_channel
from gateway.delivery.destinations import fhir_destination, mllp_destination, webhook_destination
from gateway.delivery.outbox import NewMessage, OutboxMessage, enqueue
from gateway.delivery.worker import DeliveryWorker, Sender, WorkerSettings
from mappings.er7.charsets import python_codec
from mappings.profile.delivery import FhirPushEndpoint
from mappings.profile.delivery import MllpEndpoint as MllpEndpointSettings
from mappings.profile.schema import SiteProfile

__all__ = [
    "DeliveryConfigError",
    "WebhookTarget",
    "DestinationSenders",
    "webhook_targets",
    "mllp_endpoint",
    "build_delivery_worker",
]


class DeliveryConfigError(ValueError):
    """A destination cannot be built from the configuration (e.g. a secret's variable is unset)."""


@dataclass(frozen=True)
class WebhookTarget:
    url: str
    secret: str
    timeout_s: float = 30.0

    def __repr__(self) -> str:  # never print the secret
        return f"WebhookTarget(url={self.url!r})"


def _env(environ: Mapping[str, str], name: str | None, what: str) -> str:
    if not name:
        raise DeliveryConfigError(f"{what}: no environment variable is named for the secret")
    value = environ.get(name)
    if not value:
        raise DeliveryConfigError(f"{what}: environment variable {name} is not set")
    return value


def webhook_targets(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, WebhookTarget]:
    """Manufacturer id -> webhook target, for manufacturers configured with ``webhook: {url, secret_env}``."""
    env = os.environ if environ is None else environ
    targets: dict[str, WebhookTarget] = {}
    for manufacturer in settings.manufacturers:
        hook = getattr(manufacturer, "webhook", None)  # the config section is optional
        if hook is None:
            continue
        secret = _env(env, hook.secret_env, f"manufacturer {manufacturer.id} webhook")
        targets[manufacturer.id] = WebhookTarget(url=str(hook.url), secret=secret,
                                                 timeout_s=float(getattr(hook, "timeout_s", 30.0)))
    return targets


def mllp_endpoint(settings: MllpEndpointSettings, charset: str | None) -> MllpEndpoint:
    """The MLLP adapter's endpoint for a profile's ``delivery.mllp`` section (TLS verified by default)."""
    context: ssl.SSLContext | None = None
    if settings.tls:
        try:
            context = ssl.create_default_context(cafile=settings.tls_ca_file)
        except (OSError, ssl.SSLError) as exc:
            where = f"MLLP {settings.host}:{settings.port}"
            raise DeliveryConfigError(f"{where}: tls_ca_file {settings.tls_ca_file!r} cannot be used "
                                      f"({type(exc).__name__})") from exc
    return MllpEndpoint(settings.host, settings.port, connect_timeout_s=settings.connect_timeout_s,
                        read_timeout_s=settings.read_timeout_s, ssl=context,
                        encoding=python_codec(charset),  # MSH-18 empty: ASCII
                        wait_for_application_ack=settings.wait_for_application_ack)


class _MllpDestination:
    def __init__(self, sender: MllpSender) -> None:
        self.sender = sender

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        return await self.sender.send(message.payload, control_id=message.control_id)


class _FhirDestination:
    def __init__(self, sender: FhirPushSender) -> None:
        self.sender = sender

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        return await self.sender.push(message.payload.encode("utf-8"))


class _WebhookDestination:
    def __init__(self, sender: WebhookSender) -> None:
        self.sender = sender

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        return await self.sender.send(message.payload.encode("utf-8"), delivery_id=message.control_id)


class _SubscriptionDestination:
    """A FHIR Subscription's rest-hook: endpoint read before each send, state kept after it
    (:mod:`gateway.delivery.subscription_channel`)."""

    def __init__(self, engine: Engine, subscription_id: str, client: Callable[[], httpx.AsyncClient],
                 max_failures: int, clock: Callable[[], datetime]) -> None:
        self.engine, self.subscription_id, self._client = engine, subscription_id, client
        self.max_failures, self.clock = max_failures, clock

    async def send(self, message: OutboxMessage) -> DeliveryOutcome:
        target = await asyncio.to_thread(subscription_channel.target, self.engine, self.subscription_id)
        if target is None:
            return DeliveryOutcome("dead", detail="the subscription is off or in error: not sent")
        sender = RestHookSender(target.endpoint, self._client(), timeout_s=target.timeout_s,
                                content_type=target.payload, headers=target.headers)
        outcome = await sender.send(message.payload.encode("utf-8"), notification_id=message.control_id)
        await asyncio.to_thread(subscription_channel.record_outcome, self.engine, self.subscription_id,
                                outcome,
                                max_failures=self.max_failures, now=self.clock())
        return outcome


class DestinationSenders:
    """Callable ``destination -> Sender | None`` for :class:`~gateway.delivery.worker.DeliveryWorker`.

    Everything configuration-dependent (endpoints, secrets) is checked in ``__init__``; sockets and
    the HTTP client are opened on first use, inside the worker's event loop.
    """

    def __init__(self, profiles: Mapping[str, SiteProfile],
                 webhooks: Mapping[str, WebhookTarget] | None = None, *,
                 environ: Mapping[str, str] | None = None,
                 http_transport: httpx.AsyncBaseTransport | None = None,
                 mllp_connection_factory: Callable[[MllpEndpoint], ConnectionFactory] | None = None,
                 engine: Engine | None = None, subscription_max_failures: int = 5,
                 clock: Callable[[], datetime] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._engine = engine  # FHIR Subscriptions' queues (<id>/subscription) need it; None: not served
        self._subscription_max_failures = subscription_max_failures
        self._clock = clock or (lambda: datetime.now(UTC))
        self._http_transport = http_transport
        self._mllp_factory = mllp_connection_factory
        self._client: httpx.AsyncClient | None = None
        self._builders: dict[str, Callable[[], Sender]] = {}
        self._alert_after: dict[str, int] = {}
        self._senders: dict[str, Sender] = {}
        for site_id, profile in profiles.items():
            delivery = profile.delivery
            if delivery.mllp is not None and delivery.mllp.enabled:
                endpoint = mllp_endpoint(delivery.mllp, profile.hl7v2.charset)
                self._add(mllp_destination(site_id), self._mllp_builder(endpoint),
                          delivery.max_attempts_before_alert)
            if delivery.fhir_push is not None and delivery.fhir_push.enabled:
                self._add(fhir_destination(site_id), self._fhir_builder(site_id, delivery.fhir_push, env),
                          delivery.max_attempts_before_alert)
        for manufacturer_id, target in (webhooks or {}).items():
            self._add(webhook_destination(manufacturer_id), self._webhook_builder(target), None)

    def _add(self, destination: str, builder: Callable[[], Sender], alert_after: int | None) -> None:
        self._builders[destination] = builder
        if alert_after is not None:
            self._alert_after[destination] = alert_after

    # -- builders (config checked now, connections made later)

    def _mllp_builder(self, endpoint: MllpEndpoint) -> Callable[[], Sender]:
        def build() -> Sender:
            factory = self._mllp_factory(endpoint) if self._mllp_factory is not None else None
            return _MllpDestination(MllpSender(endpoint, connection_factory=factory))
        return build

    def _fhir_builder(self, site_id: str, push: FhirPushEndpoint,
                      env: Mapping[str, str]) -> Callable[[], Sender]:
        what = f"site {site_id} FHIR push"
        auth = push.auth
        token = _env(env, auth.token_env, what) if auth.type == "bearer" else None
        credentials: ClientCredentials | None = None
        if auth.type == "oauth2_client_credentials":
            if auth.token_url is None or not auth.client_id:
                raise DeliveryConfigError(f"{what}: oauth2_client_credentials needs token_url and client_id")
            credentials = ClientCredentials(token_url=str(auth.token_url), client_id=auth.client_id,
                                            client_secret=_env(env, auth.client_secret_env, what),
                                            scope=auth.scope)

        def build() -> Sender:
            client = self._http_client()
            sender_auth: BearerToken | ClientCredentialsAuth | None = None
            if token is not None:
                sender_auth = BearerToken(token)
            elif credentials is not None:
                sender_auth = ClientCredentialsAuth(credentials, client)
            return _FhirDestination(FhirPushSender(str(push.base_url), client, auth=sender_auth,
                                                   timeout_s=push.timeout_s))
        return build

    def _webhook_builder(self, target: WebhookTarget) -> Callable[[], Sender]:
        def build() -> Sender:
            return _WebhookDestination(WebhookSender(target.url, target.secret, self._http_client(),
                                                     timeout_s=target.timeout_s))
        return build

    def _http_client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._http_transport, follow_redirects=False)
        return self._client

    # -- what the worker uses

    def __call__(self, destination: str) -> Sender | None:
        sender = self._senders.get(destination)
        if sender is None:
            builder = self._builders.get(destination)
            subscription_id = subscription_channel.subscription_of(destination)
            if builder is None and subscription_id is not None and self._engine is not None:
                engine = self._engine
                builder = functools.partial(_SubscriptionDestination, engine, subscription_id,
                                            self._http_client, self._subscription_max_failures, self._clock)
            if builder is None:
                return None
            sender = self._senders[destination] = builder()
        return sender

    def destinations(self) -> list[str]:
        return sorted(self._builders)

    def alert_after(self, destination: str) -> int | None:
        return self._alert_after.get(destination)

    async def aclose(self) -> None:
        """Close every MLLP connection and the HTTP client (the worker calls this when it stops)."""
        senders, self._senders = self._senders, {}
        for sender in senders.values():
            if isinstance(sender, _MllpDestination):
                await sender.sender.close()
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def build_delivery_worker(settings: Settings, engine: Engine,
                          profiles: Mapping[str, SiteProfile] | None = None, *,
                          worker_settings: WorkerSettings | None = None,
                          on_outcome: Callable[[OutboxMessage, DeliveryOutcome], None] | None = None,
                          environ: Mapping[str, str] | None = None,
                          http_transport: httpx.AsyncBaseTransport | None = None) -> DeliveryWorker:
    """A worker over every destination the configuration names (raises :class:`DeliveryConfigError`)."""
    if profiles is None:
        from gateway.context import load_site_profiles

        profiles = load_site_profiles(settings)
    senders = DestinationSenders(profiles, webhook_targets(settings, environ), environ=environ,
                                 http_transport=http_transport, engine=engine,
                                 subscription_max_failures=settings.subscription_max_failures)
    return DeliveryWorker(engine=engine, sender_for=senders, settings=worker_settings or WorkerSettings(),
                          on_outcome=on_outcome, close_senders=senders.aclose,
                          alert_after=senders.alert_after,
                          on_dead_letter=dead_letter_notifier(set(webhook_targets(settings, environ))),
                          on_attempt=delivery_recorder(profiles) if settings.audit_enabled else None)


def dead_letter_notifier(manufacturers_with_webhook: set[str]) -> Callable[
        [Session, OutboxMessage, DeliveryOutcome, datetime], None]:
    """Tell a manufacturer, over its webhook, that a site refused a message about its order.

    The notification is queued in the same transaction that dead-letters the message; it carries
    ids and codes only (no patient data, no ACK text).  Webhook messages themselves never notify.
    """

    def notify(session: Session, message: OutboxMessage, outcome: DeliveryOutcome, now: datetime) -> None:
        if (message.channel in ("webhook", "subscription")
                or message.manufacturer_id not in manufacturers_with_webhook):
            return
        delivery_id = str(uuid.uuid5(_WEBHOOK_NAMESPACE, f"dead-letter|{message.id}|{message.attempts + 1}"))
        body = {"type": "delivery.dead_lettered", "delivery_id": delivery_id, "at": now.isoformat(),
                "order_id": message.order_id, "site_id": message.site_id, "event_id": message.event_id,
                "destination": message.destination, "message_type": message.message_type,
                "control_id": message.control_id, "ack_code": outcome.ack_code,
                "http_status": outcome.http_status}
        note = NewMessage(destination=webhook_destination(message.manufacturer_id), channel="webhook",
                          control_id=delivery_id, message_type="delivery.dead_lettered",
                          content_type="application/json",
                          payload=json.dumps(body, separators=(",", ":"), sort_keys=True))
        enqueue(session, [note],
                site_id=message.site_id, manufacturer_id=message.manufacturer_id, order_id=message.order_id,
                event_id=message.event_id, now=now)

    return notify


_WEBHOOK_NAMESPACE = uuid.UUID("6f1c4e0a-7d1b-5c33-9a57-3b0e2c8f4d21")
