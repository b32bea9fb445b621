"""``/console``: the interface team's web console (server-rendered pages, plain forms, no script).

Pages: sign-in and sign-out, the order list and search, the order timeline, the queues with the
dead letters (admin), the delivery alerts (admin) and a site profile's dry run (the site or admin).
Every page but sign-in needs a session (:mod:`gateway.console.session`); every POST needs the
session's CSRF token (else a 403 page); another tenant's order is a 404 page, as in the API.
No patient data goes in a URL: the search form posts, and pages link orders by order id.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from gateway.auth import Principal, principal_for_token
from gateway.config import hash_token
from gateway.console import alerts as alerts_data
from gateway.console import dry_run, queues
from gateway.console.pages import SECURITY_HEADERS, render_html
from gateway.console.scope import order_filters
from gateway.console.search import MAX_QUERY, search_orders
from gateway.console.session import (
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    ConsoleSession,
    SessionKeys,
    allows,
    end_session,
    role_of,
    still_valid,
    token_kind,
)
from gateway.console.timeline import find_orders, load_timeline, when
from gateway.context import Context
from gateway.delivery.outbox import replay, skip
from gateway.errors import GatewayError
from gateway.store.db import read_session
from gateway.store.search_params import from_us, to_us
from gateway.store.tables import OrderRow, as_utc
from mappings.orders import Identifier

__all__ = ["router", "install_console"]

router = APIRouter(prefix="/console", include_in_schema=False)
PATH = "/console"
MAX_TOKEN = 8192  # characters: an OAuth access token (a JWT) fits; more is not a token
MAX_FIELDS = 250  # form fields in one POST (bulk actions select at most MAX_BULK messages)
MAX_BULK = 100
MAX_REASON = 1000
ORDER_PAGE = 50
_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_MANUFACTURER = TypeAdapter(str)


def install_console(app: FastAPI) -> None:
    """Register the console on ``app`` (after ``app.state.context`` is set): its signing key and routes."""
    app.state.console_keys = SessionKeys.from_settings(app.state.context.settings)
    app.include_router(router)


# ----------------------------------------------------------------------------- plumbing


def _context(request: Request) -> Context:
    return request.app.state.context  # type: ignore[no-any-return]


def _keys(request: Request) -> SessionKeys:
    return request.app.state.console_keys  # type: ignore[no-any-return]


def _secure(request: Request) -> bool:
    return _context(request).settings.base_url().startswith("https://")


async def _session(request: Request) -> ConsoleSession | None:
    context = _context(request)
    session = _keys(request).read(request.cookies.get(SESSION_COOKIE), context.now())
    if session is None:
        return None
    valid = await run_in_threadpool(still_valid, session, context.settings, context.engine)
    return session if valid else None


def _page(request: Request, session: ConsoleSession | None, template: str, status: int = 200,
          **values: Any) -> Response:
    principal = session.principal if session else None
    return render_html(template, status, principal=principal, csrf=_keys(request).csrf_token(session)
                       if session else "", when=when, site_ids=sorted(_context(request).profiles), **values)


def _error(request: Request, session: ConsoleSession | None, status: int, title: str,
           detail: str) -> Response:
    return _page(request, session, "error.html", status, title=title, detail=detail, code=status)


def _not_found(request: Request, session: ConsoleSession | None, what: str = "No such page.") -> Response:
    return _error(request, session, 404, "Not found", what)


def _redirect(location: str) -> Response:
    return RedirectResponse(location, status_code=303, headers=dict(SECURITY_HEADERS))


def _to_sign_in() -> Response:
    return _redirect(f"{PATH}/sign-in")


async def _form(request: Request) -> dict[str, list[str]] | None:
    """The urlencoded form in the body (bounded by the app's body limit and MAX_FIELDS), or None."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        return None
    try:
        text = (await request.body()).decode("utf-8")
        form = parse_qs(text, keep_blank_values=True, max_num_fields=MAX_FIELDS, strict_parsing=False,
                        errors="strict")
    except (UnicodeDecodeError, ValueError):
        return None
    # NUL is in no field a person types, and PostgreSQL text cannot hold it
    return None if any("\x00" in v for values in form.values() for v in values) else form


def _one(form: dict[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values and len(values) == 1 else None


Handler = Callable[[Request, ConsoleSession, dict[str, list[str]]], Awaitable[Response]]
#: Who may use a page: None lets the session in, else the refusal (a 403 page).
Gate = Callable[[Request, ConsoleSession], Response | None]


async def _signed_in(request: Request, gate: Gate | None = None) -> ConsoleSession | Response:
    """A page's session, or the response that turns the visitor away: without a (still valid) session
    the sign-in page, with one that ``gate`` refuses its 403 page."""
    session = await _session(request)
    if session is None:
        return _to_sign_in()
    refused = gate(request, session) if gate is not None else None
    return session if refused is None else refused


async def _post(request: Request, handler: Handler, gate: Gate | None = None) -> Response:
    """A signed-in POST: the form must parse and carry the session's CSRF token (else 403), then ``gate``
    must let the session in; ``handler`` answers."""
    session = await _session(request)
    form = await _form(request)  # None: not an urlencoded UTF-8 form, so it carries no CSRF token either
    expected = _keys(request).csrf_token(session) if session else None
    if (form is None or session is None or expected is None
            or not SessionKeys.same(_one(form, "csrf"), expected)):
        return _error(request, session, 403, "Forbidden",
                      "The form's security token is missing, wrong or from an ended session: "
                      "reload the page (sign in again if asked) and retry.")
    refused = gate(request, session) if gate is not None else None
    if refused is not None:
        return refused
    return await handler(request, session, form)


def _admin_only(request: Request, session: ConsoleSession) -> Response | None:
    """Queues and alerts: an admin token (an OAuth one with the ``admin`` scope), as the admin API."""
    if session.principal.is_admin and allows(session.principal, "admin"):
        return None
    return _error(request, session, 403, "Forbidden",
                  "Only an admin (with the admin scope) may use this page.")


def _may_read_orders(request: Request, session: ConsoleSession) -> Response | None:
    """Order pages and search need ``orders.read`` (always held by a static token), as ``GET /v1/orders``."""
    if allows(session.principal, "orders.read"):
        return None
    return _error(request, session, 403, "Forbidden", "This session's token lacks the orders.read scope.")


# ----------------------------------------------------------------------------- sign-in, sign-out


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    if await _session(request) is not None:
        return _redirect(PATH)
    return _sign_in_form(request, 200, None)


def _sign_in_form(request: Request, status: int, message: str | None) -> Response:
    nonce = request.cookies.get(SIGNIN_COOKIE)
    if not nonce or len(nonce) > 64:
        nonce = secrets.token_urlsafe(16)
    response = _page(request, None, "sign_in.html", status, signin_csrf=_keys(request).signin_csrf(nonce),
                     message=message)
    response.set_cookie(SIGNIN_COOKIE, nonce, max_age=3600, path=PATH, httponly=True, samesite="strict",
                        secure=_secure(request))
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await _form(request)
    nonce = request.cookies.get(SIGNIN_COOKIE)
    if form is None:
        return _error(request, None, 400, "Bad request", "Send the sign-in form (urlencoded UTF-8).")
    if (not nonce or len(nonce) > 64
            or not SessionKeys.same(_one(form, "csrf"), _keys(request).signin_csrf(nonce))):
        return _error(request, None, 403, "Forbidden",
                      "The sign-in form's security token is missing or wrong: open the sign-in page again.")
    token = (_one(form, "token") or "").strip()
    if not token or len(token) > MAX_TOKEN:
        return _sign_in_form(request, 400, "Paste an API token (at most 8192 characters).")
    context = _context(request)
    principal = await run_in_threadpool(principal_for_token, token, context.settings, context.engine)
    if principal is None:
        return _sign_in_form(request, 401, "This token is not known (or was revoked).")
    if not (allows(principal, "orders.read") or allows(principal, "admin")):
        return _sign_in_form(request, 403, "This access token holds neither orders.read nor admin: "
                                           "the console needs one of them.")
    digest = hash_token(token)
    kind = await run_in_threadpool(token_kind, digest, context.settings, context.engine)
    # an OAuth access token's session ends no later than such a token would (issue 14's setting)
    lifetime = getattr(context.settings, "oauth_access_token_lifetime_s", None) if kind == "other" else None
    cookie = _keys(request).issue(principal, digest, kind, context.now(), lifetime)
    if cookie is None:
        return _sign_in_form(request, 400, "This token holds too many scopes for a console session.")
    response = _redirect(PATH)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=_keys(request).ttl_s, path=PATH, httponly=True,
                        samesite="strict", secure=_secure(request))
    response.delete_cookie(SIGNIN_COOKIE, path=PATH, httponly=True, samesite="strict",
                           secure=_secure(request))
    return response


async def _sign_out(request: Request, session: ConsoleSession, form: dict[str, list[str]]) -> Response:
    context = _context(request)
    await run_in_threadpool(end_session, session, context.engine, context.now())
    response = _redirect(f"{PATH}/sign-in")
    response.delete_cookie(SESSION_COOKIE, path=PATH, httponly=True, samesite="strict",
                           secure=_secure(request))
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    return await _post(request, _sign_out)


# ----------------------------------------------------------------------------- orders and search


_CURSOR = re.compile(r"^([0-9]{1,17})-([0-9]{1,10})$")  # "<updated_at in µs>-<row id>": no PHI


def _recent_orders(engine: Any, principal: Principal,
                   before: tuple[int, int] | None) -> tuple[list[OrderRow], str | None]:
    """A page of the orders ``principal`` may see, most recently changed first, keyset-paged."""
    with read_session(engine) as session:
        query = select(OrderRow).where(*order_filters(principal))
        if before is not None:
            at, pk = from_us(before[0]), before[1]
            updated = col(OrderRow.updated_at)
            query = query.where((updated < at) | ((updated == at) & (col(OrderRow.id) < pk)))
        rows = list(session.exec(query.order_by(col(OrderRow.updated_at).desc(), col(OrderRow.id).desc())
                                 .limit(ORDER_PAGE + 1)).all())
    if len(rows) <= ORDER_PAGE:
        return rows, None
    last = rows[ORDER_PAGE - 1]
    return rows[:ORDER_PAGE], f"{to_us(as_utc(last.updated_at))}-{last.id}"


@router.get("")
async def home(request: Request) -> Response:
    session = await _signed_in(request, _may_read_orders)
    if isinstance(session, Response):
        return session
    raw = request.query_params.get("before")
    match = _CURSOR.match(raw) if raw is not None else None
    if raw is not None and match is None:
        return _error(request, session, 400, "Bad request", "before: not a page link of this console.")
    before = (int(match.group(1)), int(match.group(2))) if match else None
    orders, next_page = await run_in_threadpool(_recent_orders, _context(request).engine, session.principal,
                                                before)
    return _page(request, session, "orders.html", orders=orders, page_size=ORDER_PAGE, next_page=next_page,
                 first_page=before is None)


async def _search(request: Request, session: ConsoleSession, form: dict[str, list[str]]) -> Response:
    query = _one(form, "q")
    if query is None or not query.strip():
        return _page(request, session, "search.html", 400, query="", result=None,
                     message="Type an order id, CoI, DIN, MRN, HL7 control id or delivery id.")
    if len(query) > MAX_QUERY:
        return _page(request, session, "search.html", 400, query="", result=None,
                     message=f"A search is at most {MAX_QUERY} characters.")

    def run() -> Any:
        with read_session(_context(request).engine) as db:
            return search_orders(db, session.principal, query)

    result = await run_in_threadpool(run)
    return _page(request, session, "search.html", query=query, result=result, message=None)


@router.post("/search")
async def search(request: Request) -> Response:
    return await _post(request, _search, _may_read_orders)


@router.get("/orders/{order_id}")
async def order_timeline(request: Request, order_id: str) -> Response:
    session = await _signed_in(request, _may_read_orders)
    if isinstance(session, Response):
        return session
    manufacturer_id = request.query_params.get("manufacturer_id")
    try:
        order_id = _IDENTIFIER.validate_python(order_id)
        if manufacturer_id is not None:
            manufacturer_id = _IDENTIFIER.validate_python(manufacturer_id)
    except ValidationError:
        return _not_found(request, session, "No such order.")
    principal = session.principal

    def run() -> tuple[list[OrderRow], Any]:
        with read_session(_context(request).engine) as db:
            rows = find_orders(db, principal, order_id, manufacturer_id)
            return rows, (load_timeline(db, principal, rows[0]) if len(rows) == 1 else None)

    rows, timeline = await run_in_threadpool(run)
    if not rows:
        return _not_found(request, session, "No such order.")  # another tenant's order too: never 403
    if timeline is None:
        return _page(request, session, "ambiguous.html", orders=rows)
    return _page(request, session, "timeline.html", t=timeline)


# ----------------------------------------------------------------------------- queues (admin)


def _int_param(value: str | None, maximum: int = 2**63 - 1) -> int | None:
    if value is None or not value.isascii() or not value.isdigit() or len(value) > 19:
        return None
    number = int(value)
    return number if 0 < number <= maximum else None


def _queues_page(request: Request, session: ConsoleSession, status: int = 200,
                 notices: list[str] | None = None,
                 destination: str | None = None, after_id: int | None = None) -> Response:
    context = _context(request)
    with Session(context.engine) as db:
        rows = queues.queue_rows(db, context.now())
        dead = queues.dead_letters(db, destination, after_id)
    next_after = dead[-1].id if len(dead) == queues.DEAD_PAGE else None
    return _page(request, session, "outbox.html", status, rows=rows, dead=dead, notices=notices or [],
                 destination=destination, next_after=next_after, quote=quote,
                 bucket_minutes=queues.BUCKET_MINUTES, buckets=queues.BUCKETS)


@router.get("/outbox")
async def outbox(request: Request) -> Response:
    session = await _signed_in(request, _admin_only)
    if isinstance(session, Response):
        return session
    destination = request.query_params.get("destination") or None
    if destination is not None and (len(destination) > 200 or "\x00" in destination):
        return _error(request, session, 400, "Bad request", "destination: at most 200 characters, no NUL.")
    raw_after = request.query_params.get("after_id")
    after_id = _int_param(raw_after)
    if raw_after is not None and after_id is None:
        return _error(request, session, 400, "Bad request", "after_id: a positive whole number.")
    return await run_in_threadpool(_queues_page, request, session, 200, None, destination, after_id)


def _selected(form: dict[str, list[str]]) -> list[int] | str:
    """The message ids a dead-letter form acts on (one button's, or the ticked boxes), or why none."""
    one = form.get("one")
    raw = one if one else form.get("ids", [])
    if not raw:
        return "Tick at least one message."
    if len(raw) > MAX_BULK:
        return f"At most {MAX_BULK} messages at once."
    ids = [_int_param(v) for v in raw]
    if any(i is None for i in ids):
        return "A message id is not a positive whole number."
    return sorted({i for i in ids if i is not None})


def _act(request: Request, session: ConsoleSession, ids: list[int], action: str,
         reason: str | None) -> Response:
    context = _context(request)
    notices: list[str] = []
    for message_id in ids:
        with Session(context.engine) as db:
            try:
                if action == "retry":
                    replay(db, message_id, now=context.now())
                    notices.append(f"Message {message_id}: queued again (same control id).")
                else:
                    skip(db, message_id, reason=reason or "", now=context.now())
                    notices.append(f"Message {message_id}: skipped.")
            except GatewayError as exc:
                notices.append(f"Message {message_id}: {exc.detail}")
    return _queues_page(request, session, 200, notices)


async def _dead_letter_form(request: Request, session: ConsoleSession, form: dict[str, list[str]],
                            action: str) -> Response:
    """A dead-letter form (``action``: retry or skip): the selected messages (else the queues page with
    why, 400); a skip also needs a reason."""
    ids = _selected(form)
    if isinstance(ids, str):
        return await run_in_threadpool(_queues_page, request, session, 400, [ids])
    reason = None
    if action == "skip":
        reason = (_one(form, "reason") or "").strip()
        if not reason or len(reason) > MAX_REASON:
            return await run_in_threadpool(_queues_page, request, session, 400,
                                           [f"Skipping needs a reason (1 to {MAX_REASON} characters)."])
    return await run_in_threadpool(_act, request, session, ids, action, reason)


async def _retry(request: Request, session: ConsoleSession, form: dict[str, list[str]]) -> Response:
    return await _dead_letter_form(request, session, form, "retry")


async def _skip(request: Request, session: ConsoleSession, form: dict[str, list[str]]) -> Response:
    return await _dead_letter_form(request, session, form, "skip")


@router.post("/outbox/retry")
async def outbox_retry(request: Request) -> Response:
    return await _post(request, _retry, _admin_only)


@router.post("/outbox/skip")
async def outbox_skip(request: Request) -> Response:
    return await _post(request, _skip, _admin_only)


# ----------------------------------------------------------------------------- alerts (admin)


def _alerts_page(request: Request, session: ConsoleSession, status: int = 200,
                 notices: list[str] | None = None) -> Response:
    lists = alerts_data.alert_lists(_context(request).engine)
    return _page(request, session, "alerts.html", status, lists=lists, notices=notices or [],
                 max_note=MAX_REASON)


@router.get("/alerts")
async def alerts(request: Request) -> Response:
    session = await _signed_in(request, _admin_only)
    if isinstance(session, Response):
        return session
    return await run_in_threadpool(_alerts_page, request, session)


async def _acknowledge(request: Request, session: ConsoleSession, form: dict[str, list[str]]) -> Response:
    alert_id = _int_param(request.path_params["alert_id"], 2**31 - 1)
    note = (_one(form, "note") or "").strip()
    if alert_id is None:
        return _not_found(request, session, "No such alert.")
    if not note or len(note) > MAX_REASON:
        return await run_in_threadpool(_alerts_page, request, session, 400,
                                       [f"Acknowledging needs a note (1 to {MAX_REASON} characters)."])
    context = _context(request)
    by = session.principal.client_id or role_of(session.principal)
    done = await run_in_threadpool(alerts_data.acknowledge, context.engine, alert_id, by=by, note=note,
                                   now=context.now())
    return await run_in_threadpool(_alerts_page, request, session, 200, [done])


@router.post("/alerts/{alert_id}/ack")
async def alert_ack(request: Request, alert_id: str) -> Response:
    return await _post(request, _acknowledge, _admin_only)


# ----------------------------------------------------------------------------- profile dry-run


def _may_dry_run(principal: Principal, site_id: str) -> bool:
    """As ``POST /v1/sites/{site_id}/preview``: the site itself or admin, with orders.read or admin."""
    return ((principal.is_admin or (principal.role == "site" and principal.subject == site_id))
            and (allows(principal, "orders.read") or allows(principal, "admin")))


@router.get("/sites/{site_id}/dry-run")
async def dry_run_page(request: Request, site_id: str) -> Response:
    session = await _signed_in(request)
    if isinstance(session, Response):
        return session
    context = _context(request)
    if not _may_dry_run(session.principal, site_id) or site_id not in context.profiles:
        return _not_found(request, session, "No such site.")
    orders = await run_in_threadpool(dry_run.site_orders, context.engine, site_id)
    return _page(request, session, "dry_run.html", site_id=site_id, orders=orders, result=None,
                 profile_yaml="", chosen=None, problems=[], message=None)


async def _dry_run(request: Request, session: ConsoleSession, form: dict[str, list[str]]) -> Response:
    context = _context(request)
    site_id = request.path_params["site_id"]
    if not _may_dry_run(session.principal, site_id) or site_id not in context.profiles:
        return _not_found(request, session, "No such site.")
    profile_yaml = _one(form, "profile_yaml") or ""
    order_pk = _int_param(_one(form, "order"), 2**31 - 1)
    outcome = await run_in_threadpool(dry_run.run, context, site_id, profile_yaml, order_pk)
    return _page(request, session, "dry_run.html", outcome.status, site_id=site_id, orders=outcome.orders,
                 result=outcome.result, profile_yaml=profile_yaml, chosen=order_pk,
                 problems=outcome.problems, message=outcome.message)


@router.post("/sites/{site_id}/dry-run")
async def dry_run_post(request: Request, site_id: str) -> Response:
    return await _post(request, _dry_run)


# ----------------------------------------------------------------------------- static and the rest


@router.get("/static/console.css")
async def stylesheet() -> Response:
    from importlib.resources import files

    css = files("gateway.console").joinpath("static/console.css").read_bytes()
    return Response(css, media_type="text/css", headers={"Cache-Control": "max-age=300",
                                                         "X-Content-Type-Options": "nosniff"})


@router.get("/{rest:path}")
async def unknown_page(request: Request, rest: str) -> Response:
    if rest == "":  # /console/
        return _redirect(PATH)
    return _not_found(request, await _session(request))
