"""Topic-based Subscriptions, R5 Backport IG in its R4 flavour: topics, the Subscription resource,
the ``SubscriptionStatus`` Parameters and the ``history`` notification Bundle (pure builders).

* **Topics** (:data:`TOPICS`): ``task-status`` (a fulfilment Task of the site's orders changes
  ``status`` or ``businessStatus``), ``site-request`` (a request Task, identified in
  :data:`~mappings.fhir.site_request.SITE_REQUEST_SYSTEM`, is created or changes ``status`` or
  ``businessStatus``) and ``order-alert`` (a ``Flag`` of the site's orders is created or changes
  ``status``).  Each is published as an R4 ``Basic`` with the cross-version SubscriptionTopic profile
  (:func:`topic_basic`), as the IG does for R4; its canonical URL is :func:`topic_url`.
* **Which change is an event** is :func:`topic_of_change` (the new version and the one before it).
* **Filters** (``Subscription.criteria`` backport-filter-criteria extension) are ``Task?status=...``,
  ``Task?business-status=...``, ``Task?code=...``, ``Flag?status=...``, ``Flag?code=...``: several
  filters are ANDed, comma-separated values ORed (:func:`parse_filter`, :func:`matches_filters`).

Nothing here does I/O or reads a clock: times are passed in as FHIR instants.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mappings.fhir.model import validated
from mappings.fhir.site_request import SITE_REQUEST_SYSTEM
from mappings.ids import GATEWAY_BASE

__all__ = [
    "BACKPORT",
    "FILTER_EXTENSION",
    "CONTENT_EXTENSION",
    "HEARTBEAT_EXTENSION",
    "TIMEOUT_EXTENSION",
    "MAX_COUNT_EXTENSION",
    "TOPIC_CANONICAL_EXTENSION",
    "SITE_EXTENSION",
    "SUBSCRIPTION_PROFILE",
    "STATUS_PROFILE",
    "NOTIFICATION_PROFILE",
    "CONTENTS",
    "Topic",
    "TOPICS",
    "topic_url",
    "topic_code",
    "topic_basic",
    "topic_of_change",
    "Filter",
    "parse_filter",
    "matches_filters",
    "SubscriptionView",
    "build_subscription",
    "NotificationEvent",
    "status_parameters",
    "notification_bundle",
    "notification_id",
    "capability_resources",
]

BACKPORT: Final = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition"
FILTER_EXTENSION: Final = f"{BACKPORT}/backport-filter-criteria"
CONTENT_EXTENSION: Final = f"{BACKPORT}/backport-payload-content"
HEARTBEAT_EXTENSION: Final = f"{BACKPORT}/backport-heartbeat-period"
TIMEOUT_EXTENSION: Final = f"{BACKPORT}/backport-timeout"
MAX_COUNT_EXTENSION: Final = f"{BACKPORT}/backport-max-count"
TOPIC_CANONICAL_EXTENSION: Final = f"{BACKPORT}/capabilitystatement-subscriptiontopic-canonical"
SUBSCRIPTION_PROFILE: Final = f"{BACKPORT}/backport-subscription"
STATUS_PROFILE: Final = f"{BACKPORT}/backport-subscription-status-r4"
NOTIFICATION_PROFILE: Final = f"{BACKPORT}/backport-subscription-notification-r4"
#: An admin names the site a Subscription is for (a site token's own site otherwise).
SITE_EXTENSION: Final = f"{GATEWAY_BASE}/StructureDefinition/subscription-site"
_TOPIC_PROFILE: Final = "http://hl7.org/fhir/5.0/StructureDefinition/profile-SubscriptionTopic"
_XV: Final = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic"
_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, f"{GATEWAY_BASE}/Subscription")

CONTENTS: Final = ("empty", "id-only", "full-resource")


@dataclass(frozen=True)
class Topic:
    code: str  # also the Basic's id
    title: str
    resource: str  # the focus resource type
    description: str
    filters: tuple[str, ...]  # filter parameters allowed on the focus resource


TOPICS: Final[dict[str, Topic]] = {
    "task-status": Topic(
        "task-status",
        "Order Task status",
        "Task",
        "A fulfilment Task of one of the site's orders is created or changes status or businessStatus.",
        ("status", "business-status"),
    ),
    "site-request": Topic(
        "site-request",
        "Site request state",
        "Task",
        "A request Task the site sent (cancel, hold, release, change) is created or changes status or "
        "businessStatus.",
        ("status", "business-status", "code"),
    ),
    "order-alert": Topic(
        "order-alert",
        "Order alert",
        "Flag",
        "A Flag (an alert) about one of the site's orders is created or changes status.",
        ("status", "code"),
    ),
}


def topic_url(code: str) -> str:
    """The canonical URL of a topic (stable, whatever this server's own base URL)."""
    return f"{GATEWAY_BASE}/SubscriptionTopic/{code}"


def topic_code(url: str) -> str | None:
    """The topic code of a canonical URL (a trailing ``|version`` is ignored), or None."""
    prefix = f"{GATEWAY_BASE}/SubscriptionTopic/"
    code = url.split("|", 1)[0].removeprefix(prefix) if url.startswith(prefix) else None
    return code if code in TOPICS else None


def topic_basic(code: str) -> dict[str, Any]:
    """The topic as an R4 ``Basic`` with the cross-version SubscriptionTopic extensions (IG, R4)."""
    topic = TOPICS[code]
    can_filter = [
        {
            "url": f"{_XV}.canFilterBy",
            "extension": [
                {"url": "resource", "valueUri": topic.resource},
                {"url": "filterParameter", "valueString": name},
            ],
        }
        for name in topic.filters
    ]
    return validated(
        {
            "resourceType": "Basic",
            "id": code,
            "meta": {"profile": [_TOPIC_PROFILE]},
            "extension": [
                {"url": "http://hl7.org/fhir/StructureDefinition/artifact-url", "valueUri": topic_url(code)},
                {"url": f"{_XV}.name", "valueString": code},
                {"url": f"{_XV}.title", "valueString": topic.title},
                {"url": f"{_XV}.status", "valueCode": "active"},
                {"url": f"{_XV}.description", "valueMarkdown": topic.description},
                {
                    "url": f"{_XV}.resourceTrigger",
                    "extension": [
                        {"url": "description", "valueMarkdown": topic.description},
                        {
                            "url": "resource",
                            "valueUri": f"http://hl7.org/fhir/StructureDefinition/{topic.resource}",
                        },
                        {"url": "supportedInteraction", "valueCode": "create"},
                        {"url": "supportedInteraction", "valueCode": "update"},
                    ],
                },
                *can_filter,
            ],
            "code": {"coding": [{"system": "http://hl7.org/fhir/fhir-types", "code": "SubscriptionTopic"}]},
        }
    )


def _is_request_task(task: Mapping[str, Any]) -> bool:
    return any(
        isinstance(i, dict) and i.get("system") == SITE_REQUEST_SYSTEM for i in task.get("identifier") or ()
    )


def _codes(concept: Any) -> list[str]:
    if not isinstance(concept, dict):
        return []
    return [
        c["code"]
        for c in concept.get("coding") or ()
        if isinstance(c, dict) and isinstance(c.get("code"), str)
    ]


def topic_of_change(current: Mapping[str, Any], previous: Mapping[str, Any] | None) -> str | None:
    """The topic a new version is an event of, or None.  ``previous``: the version before (None: new).

    A Task's event is a new Task or a change of ``status`` or ``businessStatus`` codes (``site-request``
    for request Tasks, ``task-status`` for the others); a Flag's a new Flag or a change of ``status``.
    Any other change (a note, a date) is no event.
    """
    rtype = current.get("resourceType")
    if rtype == "Task":
        changed = previous is None or (
            current.get("status") != previous.get("status")
            or _codes(current.get("businessStatus")) != _codes(previous.get("businessStatus"))
        )
        if not changed:
            return None
        return "site-request" if _is_request_task(current) else "task-status"
    if rtype == "Flag":
        return "order-alert" if previous is None or current.get("status") != previous.get("status") else None
    return None


@dataclass(frozen=True)
class Filter:
    """One ``Type?param=v1,v2`` filter (values ORed)."""

    resource: str
    param: str
    values: tuple[str, ...]

    def text(self) -> str:
        return f"{self.resource}?{self.param}={','.join(self.values)}"


def parse_filter(text: str, topic: Topic) -> Filter | str:
    """A filter of ``topic``, or why it is not one (a message naming what is wrong, no input echoed
    beyond the allowed names)."""
    resource, sep, query = text.partition("?")
    if not sep or resource != topic.resource:
        return f"a filter of topic {topic.code} reads {topic.resource}?<parameter>=<value>"
    param, eq, value = query.partition("=")
    if not eq or param not in topic.filters:
        return f"topic {topic.code} filters on {', '.join(topic.filters)} only"
    if "&" in value:
        return "one parameter per filter (give several filters to AND them)"
    values = tuple(v for v in value.split(","))
    if not values or any(not v or len(v) > 64 or not v.isprintable() for v in values) or len(values) > 20:
        return "values are 1 to 20 comma-separated codes of 1 to 64 printable characters"
    return Filter(resource, param, values)


def _values(resource: Mapping[str, Any], param: str) -> list[str]:
    if param == "status":
        status = resource.get("status")
        return [status] if isinstance(status, str) else []
    if param == "business-status":
        return _codes(resource.get("businessStatus"))
    if param == "code":
        return _codes(resource.get("code"))
    return []


def matches_filters(resource: Mapping[str, Any], filters: Sequence[Filter]) -> bool:
    """Every filter matches (AND); a filter matches when one of its values is the resource's (OR)."""
    return all(set(_values(resource, f.param)) & set(f.values) for f in filters)


@dataclass(frozen=True)
class SubscriptionView:
    """What the store keeps of a Subscription (the resource is built from it)."""

    id: str
    site_id: str
    status: str  # requested | active | error | off
    topic: str
    filters: tuple[str, ...]
    endpoint: str
    payload: str  # MIME type
    content: str  # empty | id-only | full-resource
    heartbeat_s: int | None
    timeout_s: int
    max_count: int | None
    reason: str
    error: str | None
    version_id: int
    last_updated: str  # FHIR instant
    header_names: tuple[str, ...] = ()  # header values are secrets: never shown


def build_subscription(view: SubscriptionView) -> dict[str, Any]:
    """The R4 Subscription (backport profile); header values are masked."""
    channel_ext: list[dict[str, Any]] = [{"url": TIMEOUT_EXTENSION, "valueUnsignedInt": view.timeout_s}]
    if view.heartbeat_s is not None:
        channel_ext.insert(0, {"url": HEARTBEAT_EXTENSION, "valueUnsignedInt": view.heartbeat_s})
    if view.max_count is not None:
        channel_ext.append({"url": MAX_COUNT_EXTENSION, "valuePositiveInt": view.max_count})
    channel: dict[str, Any] = {
        "extension": channel_ext,
        "type": "rest-hook",
        "endpoint": view.endpoint,
        "payload": view.payload,
        "_payload": {"extension": [{"url": CONTENT_EXTENSION, "valueCode": view.content}]},
    }
    if view.header_names:
        channel["header"] = [f"{name}: ***" for name in view.header_names]
    resource: dict[str, Any] = {
        "resourceType": "Subscription",
        "id": view.id,
        "meta": {
            "versionId": str(view.version_id),
            "lastUpdated": view.last_updated,
            "profile": [SUBSCRIPTION_PROFILE],
        },
        "extension": [{"url": SITE_EXTENSION, "valueString": view.site_id}],
        "status": view.status,
        "reason": view.reason,
        "criteria": topic_url(view.topic),
        "channel": channel,
    }
    if view.filters:
        resource["_criteria"] = {
            "extension": [{"url": FILTER_EXTENSION, "valueString": f} for f in view.filters]
        }
    if view.error:
        resource["error"] = view.error
    return validated(resource)


@dataclass(frozen=True)
class NotificationEvent:
    number: int
    timestamp: str  # FHIR instant
    focus: str | None  # absolute URL of the focus resource (None: empty content)


def notification_id(subscription_id: str, kind: str, number: int) -> str:
    """Deterministic id of one notification (a resend carries the same Bundle id)."""
    return str(uuid.uuid5(_NAMESPACE, f"{subscription_id}|{kind}|{number}"))


def status_parameters(
    *,
    parameters_id: str,
    subscription_url: str,
    topic: str,
    status: str,
    notification_type: str,
    events_since_start: int,
    events: Sequence[NotificationEvent] = (),
    with_topic: bool = True,
    error: str | None = None,
) -> dict[str, Any]:
    """The backport ``SubscriptionStatus`` as R4 Parameters (profile backport-subscription-status-r4)."""
    parameter: list[dict[str, Any]] = [
        {"name": "subscription", "valueReference": {"reference": subscription_url}}
    ]
    if with_topic:
        parameter.append({"name": "topic", "valueCanonical": topic_url(topic)})
    parameter += [
        {"name": "status", "valueCode": status},
        {"name": "type", "valueCode": notification_type},
        {"name": "events-since-subscription-start", "valueString": str(events_since_start)},
    ]
    for event in events:
        part: list[dict[str, Any]] = [
            {"name": "event-number", "valueString": str(event.number)},
            {"name": "timestamp", "valueInstant": event.timestamp},
        ]
        if event.focus is not None:
            part.append({"name": "focus", "valueReference": {"reference": event.focus}})
        parameter.append({"name": "notification-event", "part": part})
    if error:
        parameter.append({"name": "error", "valueCodeableConcept": {"text": error}})
    return {
        "resourceType": "Parameters",
        "id": parameters_id,
        "meta": {"profile": [STATUS_PROFILE]},
        "parameter": parameter,
    }


def notification_bundle(
    *,
    bundle_id: str,
    timestamp: str,
    status: dict[str, Any],
    status_url: str,
    focus: Sequence[tuple[str, dict[str, Any] | None]] = (),
) -> dict[str, Any]:
    """The ``history`` Bundle: first the status Parameters, then one entry per focus resource
    (``(absolute URL, resource or None)``: None for id-only, which lists the URL alone)."""
    entries: list[dict[str, Any]] = [
        {
            "fullUrl": f"urn:uuid:{status['id']}",
            "resource": status,
            "request": {"method": "GET", "url": status_url},
            "response": {"status": "200"},
        }
    ]
    for url, resource in focus:
        relative = "/".join(url.rsplit("/fhir/", 1)[-1].split("/")[:2])  # Type/id (also of a /_history URL)
        entry: dict[str, Any] = {
            "fullUrl": url,
            "request": {"method": "PUT", "url": relative},
            "response": {"status": "200"},
        }
        if resource is not None:
            entry["resource"] = resource
        entries.append(entry)
    return validated(
        {
            "resourceType": "Bundle",
            "id": bundle_id,
            "meta": {"profile": [NOTIFICATION_PROFILE]},
            "type": "history",
            "timestamp": timestamp,
            "entry": entries,
        }
    )


def capability_resources() -> list[dict[str, Any]]:
    """The CapabilityStatement ``rest.resource`` entries of Subscription (topics advertised with the
    backport extension) and Basic (the topics themselves)."""
    return [
        {
            "extension": [
                {"url": TOPIC_CANONICAL_EXTENSION, "valueCanonical": topic_url(code)} for code in TOPICS
            ],
            "type": "Subscription",
            "supportedProfile": [SUBSCRIPTION_PROFILE],
            "documentation": "Topic-based subscriptions (R5 Backport IG, R4): rest-hook only, "
            "created by a site "
            "for its own orders (admin: naming the site). Topics: " + ", ".join(TOPICS) + ".",
            "interaction": [{"code": c} for c in ("create", "read", "delete", "search-type")],
            "searchParam": [{"name": "status", "type": "token"}],
            "operation": [
                {
                    "name": "status",
                    "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status",
                },
                {
                    "name": "events",
                    "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events",
                },
            ],
        },
        {
            "type": "Basic",
            "supportedProfile": [_TOPIC_PROFILE],
            "documentation": "The subscription topics (SubscriptionTopic on Basic, as the IG does for R4); "
            "GET [base]/SubscriptionTopic/[code] resolves a topic's canonical path too.",
            "interaction": [{"code": "read"}, {"code": "search-type"}],
            "searchParam": [{"name": "code", "type": "token"}],
        },
    ]
