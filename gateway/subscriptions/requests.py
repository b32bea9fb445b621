"""Reading a ``POST /fhir/Subscription`` body into a :class:`SubscriptionRequest`, or the problems
(each naming its element, e.g. ``Subscription.channel.endpoint``), checked before anything is stored.

The endpoint must be an absolute ``http(s)`` URL with a host, no user info and no fragment, and start
with one of the site profile's ``subscriptions.allowed_endpoints`` (:func:`endpoint_problem`); nothing
is resolved or contacted here.  Values from the body are never echoed in problems (an endpoint or a
header may hold a credential).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config import Settings
from mappings.fhir.subscription import (
    CONTENT_EXTENSION,
    CONTENTS,
    FILTER_EXTENSION,
    HEARTBEAT_EXTENSION,
    MAX_COUNT_EXTENSION,
    SITE_EXTENSION,
    TIMEOUT_EXTENSION,
    TOPICS,
    Filter,
    parse_filter,
    topic_code,
    topic_url,
)
from mappings.profile.subscriptions import endpoint_allowed

__all__ = ["Problem", "SubscriptionRequest", "read_subscription", "endpoint_problem"]

PAYLOADS = ("application/fhir+json", "application/json")
_URL_CHARS = re.compile(r"^[A-Za-z0-9._~:/?#\[\]!$&'()*+,;=%-]+$")
_HOST = re.compile(r"^[A-Za-z0-9.\-\[\]:]+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")
_FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "te",
        "upgrade",
        "expect",
        "proxy-authorization",
        "keep-alive",
    }
)


@dataclass(frozen=True)
class Problem:
    expression: str
    message: str
    code: str = "invalid"


@dataclass(frozen=True)
class SubscriptionRequest:
    site_id: str | None  # from the site extension (an admin must give it)
    topic: str
    filters: tuple[Filter, ...]
    endpoint: str
    payload: str
    content: str
    heartbeat_s: int | None
    timeout_s: int
    max_count: int | None
    headers: tuple[str, ...]
    reason: str

    def __repr__(self) -> str:  # the endpoint and headers may hold credentials
        return f"SubscriptionRequest(topic={self.topic!r}, site_id={self.site_id!r})"


def endpoint_problem(
    endpoint: str, prefixes: tuple[str, ...], site_id: str, max_chars: int = 2048
) -> str | None:
    """Why ``endpoint`` may not be notified for ``site_id`` (None: it may)."""
    if len(endpoint) > max_chars or not _URL_CHARS.match(endpoint):
        return f"must be an absolute http(s) URL of at most {max_chars} URL characters"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not endpoint.startswith(f"{parts.scheme}://"):
        return "must be an http:// or https:// URL"
    if "@" in parts.netloc:
        return "must not carry user info (user:password@)"
    if not parts.hostname or not _HOST.match(parts.netloc) or "%" in parts.netloc:
        return "must name a host"
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        return "has an invalid port"
    if parts.fragment or "#" in endpoint:
        return "must not have a fragment"
    if not endpoint_allowed(endpoint, prefixes):
        return (
            f"is not under an endpoint allowed for site {site_id} (its profile's "
            "subscriptions.allowed_endpoints)"
        )
    return None


def _extensions(element: Any, url: str) -> list[dict[str, Any]]:
    if not isinstance(element, dict) or not isinstance(element.get("extension"), list):
        return []
    return [e for e in element["extension"] if isinstance(e, dict) and e.get("url") == url]


def _one_int(
    element: Any, url: str, key: str, where: str, low: int, high: int, problems: list[Problem]
) -> int | None:
    found = _extensions(element, url)
    if not found:
        return None
    value = found[0].get(key)
    if len(found) > 1 or isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(Problem(where, f"one {key} from {low} to {high}"))
        return None
    return value


def read_subscription(body: Any, settings: Settings) -> SubscriptionRequest | list[Problem]:
    """The request, or every problem found (the caller lists at most ``max_error_entries``)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Subscription":
        return [Problem("Subscription.resourceType", "the body must be a Subscription resource", "structure")]
    problems: list[Problem] = []
    status = body.get("status", "requested")
    if status not in ("requested", "active"):
        problems.append(Problem("Subscription.status", "a new subscription is requested (or active)"))
    if "end" in body:
        problems.append(
            Problem(
                "Subscription.end", "an end time is not supported: DELETE the subscription", "not-supported"
            )
        )
    reason = body.get("reason", "Topic-based subscription")
    if not isinstance(reason, str) or not 1 <= len(reason) <= 1000:
        problems.append(Problem("Subscription.reason", "a string of 1 to 1000 characters"))
        reason = ""
    site_ext = _extensions(body, SITE_EXTENSION)
    site_id = site_ext[0].get("valueString") if site_ext else None
    if site_ext and (len(site_ext) > 1 or not isinstance(site_id, str) or not 0 < len(site_id) <= 64):
        problems.append(Problem("Subscription.extension", f"one {SITE_EXTENSION} valueString (a site id)"))
        site_id = None
    criteria = body.get("criteria")
    topic = topic_code(criteria) if isinstance(criteria, str) and len(criteria) <= 500 else None
    filters: list[Filter] = []
    if topic is None:
        problems.append(
            Problem(
                "Subscription.criteria",
                "the canonical URL of a topic served here: " + ", ".join(topic_url(code) for code in TOPICS),
                "not-supported",
            )
        )
    else:
        texts = [e.get("valueString") for e in _extensions(body.get("_criteria"), FILTER_EXTENSION)]
        if len(texts) > settings.subscription_max_filters:
            problems.append(
                Problem(
                    "Subscription.criteria.extension",
                    f"at most {settings.subscription_max_filters} filters",
                    "too-costly",
                )
            )
            texts = []
        for n, text in enumerate(texts):
            parsed = (
                parse_filter(text, TOPICS[topic])
                if isinstance(text, str) and len(text) <= 1500
                else "a filter is a string of at most 1500 characters"
            )
            if isinstance(parsed, str):
                problems.append(Problem(f"Subscription.criteria.extension[{n}]", parsed))
            else:
                filters.append(parsed)
    channel = body.get("channel")
    if not isinstance(channel, dict):
        problems.append(
            Problem("Subscription.channel", "a channel with type rest-hook and an endpoint", "required")
        )
        channel = {}
    elif channel.get("type") != "rest-hook":
        problems.append(Problem("Subscription.channel.type", "only rest-hook is supported", "not-supported"))
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str):
        problems.append(
            Problem("Subscription.channel.endpoint", "an absolute http(s) URL is required", "required")
        )
        endpoint = ""
    payload = channel.get("payload", "application/fhir+json")
    if payload not in PAYLOADS:
        problems.append(Problem("Subscription.channel.payload", f"one of {', '.join(PAYLOADS)}"))
    content_ext = _extensions(channel.get("_payload"), CONTENT_EXTENSION)
    content = content_ext[0].get("valueCode") if content_ext else "id-only"
    if content not in CONTENTS or len(content_ext) > 1:
        problems.append(
            Problem("Subscription.channel.payload.extension", f"content is one of {', '.join(CONTENTS)}")
        )
    heartbeat = _one_int(
        channel,
        HEARTBEAT_EXTENSION,
        "valueUnsignedInt",
        "Subscription.channel.extension",
        settings.subscription_min_heartbeat_s,
        settings.subscription_max_heartbeat_s,
        problems,
    )
    timeout = _one_int(
        channel,
        TIMEOUT_EXTENSION,
        "valueUnsignedInt",
        "Subscription.channel.extension",
        1,
        settings.subscription_max_timeout_s,
        problems,
    )
    max_count = _one_int(
        channel, MAX_COUNT_EXTENSION, "valuePositiveInt", "Subscription.channel.extension", 1, 1000, problems
    )
    headers = channel.get("header", [])
    if not isinstance(headers, list) or len(headers) > settings.subscription_max_headers:
        problems.append(
            Problem(
                "Subscription.channel.header",
                f"at most {settings.subscription_max_headers} headers",
                "too-costly",
            )
        )
        headers = []
    for n, header in enumerate(headers):
        name, colon, value = header.partition(":") if isinstance(header, str) else ("", "", "")
        if (
            not colon
            or not _HEADER_NAME.match(name.strip())
            or name.strip().lower() in _FORBIDDEN_HEADERS
            or len(header) > 1024
            or not value.strip().isprintable()
        ):
            problems.append(
                Problem(
                    f"Subscription.channel.header[{n}]",
                    "'Name: value' (a token name, not a "
                    "hop-by-hop or content header; printable value; at most 1024 characters)",
                )
            )
    if problems:
        return problems
    assert topic is not None and isinstance(content, str)
    return SubscriptionRequest(
        site_id=site_id,
        topic=topic,
        filters=tuple(filters),
        endpoint=endpoint,
        payload=payload,
        content=content,
        heartbeat_s=heartbeat,
        timeout_s=timeout if timeout is not None else settings.subscription_default_timeout_s,
        max_count=max_count,
        headers=tuple(h.strip() for h in headers),
        reason=reason,
    )
