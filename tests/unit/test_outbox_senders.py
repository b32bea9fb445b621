"""Destination senders built from site profiles and manufacturer webhook settings (no I/O: nothing
connects until a sender is used), and the outbox's JSON view."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from pydantic import ValidationError

from gateway.delivery.destinations import webhook_destination
from gateway.delivery.outbox import DeliveryAttempt, OutboxMessage, message_view
from gateway.delivery.senders import (
    DeliveryConfigError,
    DestinationSenders,
    WebhookTarget,
    mllp_endpoint,
    webhook_targets,
)
from gateway.delivery.worker import WorkerSettings
from mappings.profile.delivery import DeliverySettings, FhirPushEndpoint, MllpEndpoint
from mappings.profile.loader import load_profile

ROOT = Path(__file__).resolve().parents[2]
PROFILE = load_profile(ROOT / "fixtures" / "profiles" / "site-a.yaml")


def profile(**delivery: object):  # type: ignore[no-untyped-def]
    return PROFILE.model_copy(update={"delivery": DeliverySettings(**delivery)})  # type: ignore[arg-type]


MLLP = MllpEndpoint(host="engine.site-a.example.org", port=2575)
PUSH = FhirPushEndpoint(base_url="https://fhir.site-a.example.org/r4")


def test_each_configured_endpoint_is_one_destination_with_one_reused_sender() -> None:
    hooks = {"acme-bio": WebhookTarget(url="https://hooks.example.com/x", secret="s3cret")}
    senders = DestinationSenders({"site-a": profile(mllp=MLLP, fhir_push=PUSH, max_attempts_before_alert=4)},
                                 hooks)
    assert senders.destinations() == ["acme-bio/webhook", "site-a/fhir", "site-a/mllp"]
    first = senders("site-a/mllp")
    assert first is not None and senders("site-a/mllp") is first  # one persistent MLLP connection
    assert senders("site-a/fhir") is not None and senders("acme-bio/webhook") is not None
    assert senders("site-b/mllp") is None and senders("nova-cell/webhook") is None
    assert senders.alert_after("site-a/mllp") == 4 and senders.alert_after("acme-bio/webhook") is None
    assert webhook_destination("acme-bio") == "acme-bio/webhook"


def test_disabled_or_absent_endpoints_make_no_destination() -> None:
    off = DestinationSenders({"site-a": profile(mllp=MLLP.model_copy(update={"enabled": False}))})
    assert off.destinations() == []
    assert DestinationSenders({"site-a": profile()}).destinations() == []


def test_a_missing_secret_refuses_the_start_naming_the_variable() -> None:
    bearer = FhirPushEndpoint.model_validate({"base_url": "https://fhir.site-a.example.org/r4",
                                              "auth": {"type": "bearer", "token_env": "SITE_A_PUSH_TOKEN"}})
    with pytest.raises(DeliveryConfigError, match="SITE_A_PUSH_TOKEN is not set"):
        DestinationSenders({"site-a": profile(fhir_push=bearer)}, environ={})
    oauth = FhirPushEndpoint.model_validate({
        "base_url": "https://fhir.site-a.example.org/r4",
        "auth": {"type": "oauth2_client_credentials", "token_url": "https://auth.site-a.example.org/token",
                 "client_id": "cgt-gateway", "client_secret_env": "SITE_A_CLIENT_SECRET"}})
    with pytest.raises(DeliveryConfigError, match="SITE_A_CLIENT_SECRET"):
        DestinationSenders({"site-a": profile(fhir_push=oauth)}, environ={})
    ok = DestinationSenders({"site-a": profile(fhir_push=oauth)}, environ={"SITE_A_CLIENT_SECRET": "x"})
    assert ok.destinations() == ["site-a/fhir"]


@pytest.mark.parametrize("auth,missing", [
    ({"type": "bearer"}, "token_env"),
    ({"type": "oauth2_client_credentials", "client_secret_env": "S"}, "token_url, client_id"),
    ({"type": "oauth2_client_credentials", "token_url": "https://a.example.org/t", "client_id": "c"},
     "client_secret_env"),
])
def test_incomplete_push_auth_is_refused_when_the_profile_loads(auth: dict, missing: str) -> None:
    with pytest.raises(ValidationError, match=missing):
        FhirPushEndpoint.model_validate({"base_url": "https://fhir.site-a.example.org/r4", "auth": auth})


def test_webhook_targets_read_their_secret_from_the_named_variable() -> None:
    hook = SimpleNamespace(url="https://hooks.acme-bio.example.com/cgt", secret_env="ACME_HOOK_SECRET")
    settings = SimpleNamespace(manufacturers=[SimpleNamespace(id="acme-bio", webhook=hook),
                                              SimpleNamespace(id="nova-cell")])
    targets = webhook_targets(settings, {"ACME_HOOK_SECRET": "whsec-1"})  # type: ignore[arg-type]
    assert list(targets) == ["acme-bio"] and targets["acme-bio"].secret == "whsec-1"
    assert "whsec-1" not in repr(targets["acme-bio"])
    with pytest.raises(DeliveryConfigError, match="ACME_HOOK_SECRET is not set") as missing:
        webhook_targets(settings, {})  # type: ignore[arg-type]
    assert "whsec" not in str(missing.value)


def test_mllp_endpoint_from_the_profile() -> None:
    plain = mllp_endpoint(MllpEndpoint(host="h", port=2575, read_timeout_s=7, connect_timeout_s=2), "8859/1")
    assert (plain.host, plain.port, plain.read_timeout_s, plain.connect_timeout_s) == ("h", 2575, 7, 2)
    assert plain.encoding == "latin-1" and plain.ssl is None
    assert mllp_endpoint(MLLP, None).encoding == "ascii"  # MSH-18 empty: the HL7 default, ASCII
    assert mllp_endpoint(MLLP, "UNICODE UTF-8").encoding == "utf-8"
    secure = mllp_endpoint(MllpEndpoint(host="h", port=2575, tls=True, wait_for_application_ack=True), None)
    assert secure.ssl is not None and secure.ssl.verify_mode == ssl.CERT_REQUIRED
    assert secure.ssl.check_hostname
    assert secure.wait_for_application_ack and secure.destination == "mllps://h:2575"


def test_message_view_shows_payload_only_when_asked() -> None:
    now = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
    message = OutboxMessage(id=7, destination="site-a/mllp", channel="mllp", site_id="site-a",
                            manufacturer_id="acme-bio", order_id="ORD-1", event_id="EV-1", control_id="C7",
                            message_type="OML^O21", content_type="application/hl7-v2",
                            payload="MSH|...PID|1||MRN1", next_attempt_at=now, created_at=now)
    attempt = DeliveryAttempt(message_id=7, attempted_at=now, outcome="retry", ack_code="AR", latency_ms=3.5,
                              detail="rejected", worker_id="w1")
    view = message_view(message, [attempt])
    assert "payload" not in view and "MRN1" not in str(view)
    assert view["attempt_log"] == [{"at": now.isoformat(), "outcome": "retry", "ack_code": "AR",
                                    "http_status": None, "latency_ms": 3.5, "detail": "rejected",
                                    "worker": "w1"}]
    assert message_view(message, with_payload=True)["payload"] == "MSH|...PID|1||MRN1"


def test_worker_settings_hold_the_queue_by_default() -> None:
    settings = WorkerSettings()
    assert settings.retry.max_attempts is None  # never give up on a retryable message: hold the queue
    assert settings.retry.delay(1) >= settings.retry.initial_s  # and never retry at once


def test_an_unusable_tls_ca_file_refuses_the_start(tmp_path: Path) -> None:
    settings = MllpEndpoint(host="h", port=2575, tls=True, tls_ca_file=str(tmp_path / "missing-ca.pem"))
    with pytest.raises(DeliveryConfigError, match="tls_ca_file"):
        mllp_endpoint(settings, None)
