"""Pure parts of FHIR Subscriptions (issue 16): topics, change classification, filters, endpoint
prefixes, the Subscription body reader, and R4B validity of everything built."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class

from gateway.config import load_settings
from gateway.subscriptions.requests import endpoint_problem, read_subscription
from mappings.fhir.site_request import SITE_REQUEST_SYSTEM
from mappings.fhir.subscription import (
    TOPICS,
    NotificationEvent,
    SubscriptionView,
    build_subscription,
    matches_filters,
    notification_bundle,
    parse_filter,
    status_parameters,
    topic_basic,
    topic_code,
    topic_of_change,
    topic_url,
)
from mappings.profile.subscriptions import SubscriptionSettings, endpoint_allowed
from tests.integration.subscription_support import subscription_body


def _r4b(resource: dict) -> None:
    get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def _task(status: str, business: str = "placed", request: bool = False) -> dict:
    task = {
        "resourceType": "Task",
        "id": "t1",
        "status": status,
        "intent": "order",
        "businessStatus": {"coding": [{"system": "https://x", "code": business}]},
    }
    if request:
        task["identifier"] = [{"system": SITE_REQUEST_SYSTEM, "value": "r1"}]
    return task


def test_topics_resolve_and_validate() -> None:
    for code in TOPICS:
        assert topic_code(topic_url(code)) == code
        assert topic_code(topic_url(code) + "|1.0") == code
        _r4b(topic_basic(code))
    assert topic_code("https://cgt-gateway.example.org/fhir/SubscriptionTopic/other") is None
    assert topic_code("Task?status=completed") is None


def test_one_event_per_status_or_business_status_change() -> None:
    assert topic_of_change(_task("requested"), None) == "task-status"
    assert topic_of_change(_task("in-progress"), _task("requested")) == "task-status"
    assert topic_of_change(_task("in-progress", "shipped"), _task("in-progress", "released")) == "task-status"
    same = {**_task("in-progress"), "note": [{"text": "changed"}]}
    assert topic_of_change(same, _task("in-progress")) is None
    assert (
        topic_of_change(_task("completed", request=True), _task("requested", request=True)) == "site-request"
    )
    flag = {
        "resourceType": "Flag",
        "id": "f1",
        "status": "active",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/p"},
    }
    assert topic_of_change(flag, None) == "order-alert"
    assert topic_of_change({**flag, "status": "inactive"}, flag) == "order-alert"
    assert topic_of_change({**flag, "period": {"start": "2026-01-01"}}, flag) is None
    assert topic_of_change({"resourceType": "Observation", "id": "o"}, None) is None


def test_filters_and_or() -> None:
    topic = TOPICS["task-status"]
    status = parse_filter("Task?status=completed,in-progress", topic)
    business = parse_filter("Task?business-status=shipped", topic)
    assert not isinstance(status, str) and not isinstance(business, str)
    assert matches_filters(_task("in-progress", "shipped"), [status, business])
    assert not matches_filters(_task("in-progress", "released"), [status, business])
    assert not matches_filters(_task("requested", "shipped"), [status])
    for bad in ("Flag?status=active", "Task?owner=x", "Task?status=", "Task?status=a&code=b", "status=a"):
        assert isinstance(parse_filter(bad, topic), str), bad


def test_endpoint_prefixes_stop_at_host_boundaries() -> None:
    loop = ("http://127.0.0.1:",)
    assert endpoint_allowed("http://127.0.0.1:8080/hook", loop)
    assert not endpoint_allowed("http://127.0.0.1:@evil.test/", loop)
    assert not endpoint_allowed("http://127.0.0.10:80/", loop)
    host = ("https://ehr.example.org",)
    assert endpoint_allowed("https://ehr.example.org/hooks", host)
    assert not endpoint_allowed("https://ehr.example.org.evil.test/hooks", host)
    assert endpoint_allowed("https://ehr.example.org/fhir/hooks/a", ("https://ehr.example.org/fhir/hooks/",))
    with pytest.raises(ValueError):
        SubscriptionSettings(allowed_endpoints=("ftp://x/",))
    with pytest.raises(ValueError):
        SubscriptionSettings(allowed_endpoints=("https://user@x/",))


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://evil.test/",
        "http://127.0.0.1:80@evil.test/",
        "http://u:p@127.0.0.1:9/",
        "file:///etc/passwd",
        "http://127.0.0.1:99999/",
        "http://127.0.0.1:9/a b",
        "http://127.0.0.1:9/#frag",
        "http://127.0.0.1:9\\@x/",
        "http://127.0.0.1:" + "9" * 3000,
    ],
)
def test_endpoint_refused(endpoint: str) -> None:
    assert endpoint_problem(endpoint, ("http://127.0.0.1:",), "site-a") is not None


def test_read_subscription_names_each_bad_element() -> None:
    settings = load_settings()
    ok = read_subscription(
        subscription_body("http://127.0.0.1:9/x", filters=("Task?status=completed",)), settings
    )
    assert (
        not isinstance(ok, list)
        and ok.content == "id-only"
        and ok.timeout_s == settings.subscription_default_timeout_s
    )
    body = subscription_body(
        "http://127.0.0.1:9/x", content="everything", heartbeat_s=1, filters=("Flag?x=y",)
    )
    body["channel"]["type"] = "websocket"
    body["channel"]["header"] = ["Host: evil"]
    body["end"] = "2030-01-01T00:00:00Z"
    problems = read_subscription(body, settings)
    assert isinstance(problems, list)
    assert {p.expression for p in problems} == {
        "Subscription.channel.type",
        "Subscription.channel.payload.extension",
        "Subscription.channel.extension",
        "Subscription.criteria.extension[0]",
        "Subscription.channel.header[0]",
        "Subscription.end",
    }
    assert (
        read_subscription({"resourceType": "Patient"}, settings)[0].expression == "Subscription.resourceType"
    )  # type: ignore[index]


def test_built_resources_validate_with_r4b() -> None:
    view = SubscriptionView(
        "s1",
        "site-a",
        "active",
        "task-status",
        ("Task?status=completed",),
        "http://127.0.0.1:9/x",
        "application/fhir+json",
        "full-resource",
        60,
        10,
        5,
        "EHR",
        None,
        2,
        "2026-11-01T09:00:00Z",
        ("Authorization",),
    )
    resource = build_subscription(view)
    _r4b(resource)
    assert resource["channel"]["header"] == ["Authorization: ***"]  # a header's value is a secret
    status = status_parameters(
        parameters_id="p",
        subscription_url="http://gw/fhir/Subscription/s1",
        topic="task-status",
        status="active",
        notification_type="event-notification",
        events_since_start=7,
        events=[NotificationEvent(7, "2026-11-01T09:00:00Z", "http://gw/fhir/Task/t1")],
    )
    bundle = notification_bundle(
        bundle_id="b",
        timestamp="2026-11-01T09:00:00Z",
        status=status,
        status_url="http://gw/fhir/Subscription/s1/$status",
        focus=[("http://gw/fhir/Task/t1", _task("completed"))],
    )
    _r4b(bundle)
    assert bundle["type"] == "history" and bundle["entry"][0]["resource"]["resourceType"] == "Parameters"
    assert bundle["entry"][1]["request"] == {"method": "PUT", "url": "Task/t1"}
