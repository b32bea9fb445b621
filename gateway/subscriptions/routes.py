"""The ``/fhir`` Subscription endpoints (R4 backport) and the topics they name.

* ``POST /fhir/Subscription`` (site token, or admin naming the site in the
  ``.../StructureDefinition/subscription-site`` extension): ``201`` with the Subscription
  (``requested``; its handshake is queued), ``422`` OperationOutcome naming the element otherwise.
* ``GET /fhir/Subscription`` (``status=`` optional; a site's own, admin all), ``GET /fhir/Subscription/{id}``,
  ``GET /fhir/Subscription/{id}/$status``,
  ``GET /fhir/Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=``,
  ``DELETE /fhir/Subscription/{id}`` (status ``off``).  Another site's id answers 404.
* Topics: ``GET /fhir/Basic`` and ``GET /fhir/Basic/{code}`` (the IG's R4 form: ``Basic`` with the
  SubscriptionTopic cross-version profile); ``GET /fhir/SubscriptionTopic/{code}`` answers the same
  Basic, so a topic's canonical path resolves here too.  Every authenticated client may read them.

Scopes: ``system/Subscription.c`` / ``.r`` / ``.s`` / ``.d``, ``system/Basic.r`` / ``.s``.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from gateway.auth import Principal, current_principal, needs
from gateway.context import Context
from gateway.fhir_api.outcome import FhirError, FhirRoute, check_format, fhir_response
from gateway.subscriptions import store
from gateway.subscriptions.requests import Problem, endpoint_problem, read_subscription
from mappings.fhir.subscription import TOPICS, build_subscription, topic_basic

__all__ = ["router"]

router = APIRouter(prefix="/fhir", route_class=FhirRoute, tags=["fhir"])
_MEDIA_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
_STATES = ("requested", "active", "error", "off")
_MAX_NUMBER = 2**53


def _context(request: Request) -> Context:
    return request.app.state.context  # type: ignore[no-any-return]


def _owner(principal: Principal) -> store.Owner:
    if principal.is_admin:
        return store.Owner(None)
    if principal.role == "site" and principal.subject:
        return store.Owner(principal.subject)
    raise FhirError(403, "forbidden", "Subscriptions belong to sites: use a site (or admin) token")


def _invalid(problems: list[Problem], limit: int) -> Response:
    issues: list[dict[str, Any]] = [
        {
            "severity": "error",
            "code": p.code,
            "diagnostics": f"{p.expression}: {p.message}",
            "expression": [p.expression],
        }
        for p in problems[:limit]
    ]
    if len(problems) > limit:
        issues.append(
            {
                "severity": "information",
                "code": "too-costly",
                "diagnostics": f"{len(problems) - limit} more problems not listed",
            }
        )
    return fhir_response({"resourceType": "OperationOutcome", "issue": issues}, 422)


def _resource(row: Any) -> dict[str, Any]:
    return build_subscription(store.view_of(row))


@router.post(
    "/Subscription",
    name="fhir_create_subscription",
    status_code=201,
    dependencies=[needs("system/Subscription.c")],
)
async def create_subscription(
    request: Request, principal: Principal = Depends(current_principal)
) -> Response:
    check_format(request)
    owner = _owner(principal)
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in _MEDIA_TYPES:
        raise FhirError(415, "not-supported", "POST Subscription takes application/fhir+json")
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise FhirError(400, "structure", "The body is not JSON") from None
    context = _context(request)
    settings = context.settings
    read = read_subscription(body, settings)
    if isinstance(read, list):
        return _invalid(read, settings.max_error_entries)
    site_id = owner.site_id or read.site_id
    if site_id is None:
        return _invalid(
            [
                Problem(
                    "Subscription.extension",
                    "an admin names the site the subscription is for "
                    "(extension subscription-site, valueString the site id)",
                    "required",
                )
            ],
            settings.max_error_entries,
        )
    if owner.site_id is not None and read.site_id not in (None, owner.site_id):
        return _invalid(
            [Problem("Subscription.extension", "a site subscribes for itself only", "forbidden")],
            settings.max_error_entries,
        )
    profile = context.profiles.get(site_id)
    if profile is None:
        return _invalid(
            [Problem("Subscription.extension", "no such site", "not-found")], settings.max_error_entries
        )
    problem = endpoint_problem(read.endpoint, profile.subscriptions.allowed_endpoints, site_id)
    if problem is not None:
        return _invalid(
            [Problem("Subscription.channel.endpoint", problem, "value")], settings.max_error_entries
        )
    view = await run_in_threadpool(
        store.create,
        context,
        site_id,
        read,
        principal.client_id or f"{principal.role}:{principal.subject or ''}",
    )
    location = f"{settings.base_url()}/fhir/Subscription/{view.id}"
    return fhir_response(
        build_subscription(view), 201, headers={"Location": location, "ETag": f'W/"{view.version_id}"'}
    )


@router.get("/Subscription", name="fhir_search_subscription", dependencies=[needs("system/Subscription.s")])
def search_subscriptions(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    check_format(request)
    owner = _owner(principal)
    status: str | None = None
    for key, value in request.query_params.multi_items():
        if key == "status" and status is None and value in _STATES:
            status = value
        elif key != "_format":
            raise FhirError(
                400,
                "invalid",
                f"Subscription search takes status ({', '.join(_STATES)}) only, once",
                expression=key[:64],
            )
    context = _context(request)
    limit = context.settings.subscription_max_per_site * 5
    rows = store.search(context.engine, owner, status, limit)
    base = context.settings.base_url()
    return fhir_response(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(rows),
            "link": [{"relation": "self", "url": f"{base}/fhir/Subscription"}],
            "entry": [
                {
                    "fullUrl": f"{base}/fhir/Subscription/{row.id}",
                    "resource": _resource(row),
                    "search": {"mode": "match"},
                }
                for row in rows
            ],
        }
    )


def _own_subscription(
    subscription_id: str, request: Request, principal: Principal = Depends(current_principal)
) -> Any:
    """A route dependency: the caller's Subscription ``subscription_id`` (another site's: 404), once the
    response format is checked; what the reads that take no parameters but ``_format`` answer from."""
    check_format(request)
    return store.find(_context(request).engine, _owner(principal), subscription_id)


_OwnSubscription = Annotated[Any, Depends(_own_subscription)]


@router.get(
    "/Subscription/{subscription_id}",
    name="fhir_read_subscription",
    dependencies=[needs("system/Subscription.r")],
)
def read_subscription_route(row: _OwnSubscription) -> Response:
    return fhir_response(_resource(row), headers={"ETag": f'W/"{row.version_id}"'})


@router.get(
    "/Subscription/{subscription_id}/$status",
    name="fhir_subscription_status",
    dependencies=[needs("system/Subscription.r")],
)
def subscription_status(request: Request, row: _OwnSubscription) -> Response:
    return fhir_response(store.status_bundle(_context(request), row))


def _number(request: Request, name: str) -> int | None:
    values = request.query_params.getlist(name)
    if not values:
        return None
    value = values[0]
    if (
        len(values) > 1
        or not (value.isascii() and value.isdigit())
        or len(value) > 16
        or not 1 <= int(value) <= _MAX_NUMBER
    ):
        raise FhirError(400, "invalid", f"{name} is one positive integer", expression=name)
    return int(value)


@router.get(
    "/Subscription/{subscription_id}/$events",
    name="fhir_subscription_events",
    dependencies=[needs("system/Subscription.r")],
)
def subscription_events(
    subscription_id: str, request: Request, principal: Principal = Depends(current_principal)
) -> Response:
    check_format(request)
    for key in request.query_params:
        if key not in ("eventsSinceNumber", "eventsUntilNumber", "_format"):
            raise FhirError(
                400, "invalid", "$events takes eventsSinceNumber and eventsUntilNumber", expression=key[:64]
            )
    since, until = _number(request, "eventsSinceNumber"), _number(request, "eventsUntilNumber")
    if since is not None and until is not None and until < since:
        raise FhirError(
            400, "invalid", "eventsUntilNumber is before eventsSinceNumber", expression="eventsUntilNumber"
        )
    context = _context(request)
    row = store.find(context.engine, _owner(principal), subscription_id)
    return fhir_response(store.events_bundle(context, row, since, until))


@router.delete(
    "/Subscription/{subscription_id}",
    name="fhir_delete_subscription",
    dependencies=[needs("system/Subscription.d")],
)
async def delete_subscription(
    subscription_id: str, request: Request, principal: Principal = Depends(current_principal)
) -> Response:
    owner = _owner(principal)
    await run_in_threadpool(store.delete, _context(request), owner, subscription_id)
    return Response(status_code=204)


def _topic(code: str) -> dict[str, Any]:
    if code not in TOPICS:
        raise FhirError(404, "not-found", "no such topic; topics: " + ", ".join(TOPICS))
    return topic_basic(code)


@router.get("/Basic", name="fhir_search_topics", dependencies=[needs("system/Basic.s")])
def search_topics(request: Request, principal: Principal = Depends(current_principal)) -> Response:
    check_format(request)
    for key, value in request.query_params.multi_items():
        if key not in ("_format", "code") or (
            key == "code" and value.rsplit("|", 1)[-1] != "SubscriptionTopic"
        ):
            raise FhirError(
                400,
                "invalid",
                "Basic holds the subscription topics: search takes code=SubscriptionTopic only",
                expression=key[:64],
            )
    base = _context(request).settings.base_url()
    return fhir_response(
        {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(TOPICS),
            "entry": [
                {
                    "fullUrl": f"{base}/fhir/Basic/{code}",
                    "resource": topic_basic(code),
                    "search": {"mode": "match"},
                }
                for code in TOPICS
            ],
        }
    )


@router.get("/Basic/{code}", name="fhir_read_topic", dependencies=[needs("system/Basic.r")])
def read_topic(code: str, request: Request, principal: Principal = Depends(current_principal)) -> Response:
    check_format(request)
    return fhir_response(_topic(code))


@router.get("/SubscriptionTopic/{code}", name="fhir_resolve_topic", dependencies=[needs("system/Basic.r")])
def resolve_topic(code: str, request: Request, principal: Principal = Depends(current_principal)) -> Response:
    check_format(request)
    return fhir_response(_topic(code))
