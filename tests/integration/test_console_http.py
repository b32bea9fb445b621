"""The console's HTTP rules, through the TestClient: sessions and cookie flags, CSRF on every POST,
tenant isolation (another tenant's order is the same 404 page as no order), no PHI in URLs or
redirects, bounded inputs.  What a browser sees is in tests/e2e/test_console_browser.py."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from gateway.auth import Principal, create_token
from gateway.bootstrap import create_app
from gateway.config import Settings, load_settings, parse_role
from gateway.console.session import SESSION_COOKIE
from gateway.console.tables import SignedOutRow
from gateway.delivery.outbox import MessageState
from gateway.store.tables import ApiClientRow, as_utc
from tests.conftest import ACME, ACME_COI, NOVA, TestClient, nova_order_body, order_body
from tests.console_support import csrf_of, post_form, sign_in
from tests.integration.test_delivery_support import messages, write_config

PATIENT = order_body()["patient"]
PHI = (PATIENT["mrn"], PATIENT["family"], PATIENT["given"][0], PATIENT["birth_date"])


@pytest.fixture
def queued(engine: Engine, tmp_path: Path) -> Settings:
    """Sites with an MLLP endpoint (nobody listens: the messages stay pending), the demo tokens."""
    url = engine.url.render_as_string(hide_password=False)
    config = write_config(tmp_path, url, {"site-a": 9, "site-b": 9}, demo_clients=True)
    return load_settings(config, public_base_url="http://testserver")


@pytest.fixture
def app_client(queued: Settings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(queued, engine=engine), raise_server_exceptions=False) as client:
        assert client.post("/v1/orders", json=order_body("ORD-1"), headers=ACME).status_code == 201
        assert client.post("/v1/orders", json=nova_order_body("NOVA-1"), headers=NOVA).status_code == 201
        yield client


def _signed_in(client: TestClient, token: str) -> TestClient:
    client.cookies.clear()
    response = sign_in(client, token)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/console"
    return client


def _set_cookie(response) -> str:  # type: ignore[no-untyped-def]
    cookies = [v for k, v in response.headers.multi_items()
               if k == "set-cookie" and v.startswith(SESSION_COOKIE + "=")]
    assert len(cookies) == 1, response.headers
    return cookies[0]


# ----------------------------------------------------------------------------- sessions


def test_sign_in_sets_a_strict_httponly_cookie_without_the_token(app_client: TestClient) -> None:
    response = sign_in(app_client, "demo-site-a-token")
    assert response.status_code == 303
    cookie = _set_cookie(response)
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=strict" in flags and "path=/console" in flags
    assert "secure" not in flags  # public_base_url is http here
    assert "demo-site-a-token" not in cookie
    page = app_client.get("/console")
    assert page.status_code == 200 and "ORD-1" in page.text and "NOVA-1" not in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["cache-control"] == "no-store"


def test_the_cookie_is_secure_when_the_gateway_is_published_over_https(queued: Settings,
                                                                         engine: Engine) -> None:
    settings = queued.model_copy(update={"public_base_url": "https://gateway.example"})
    with TestClient(create_app(settings, engine=engine), base_url="https://testserver") as client:
        cookie = _set_cookie(sign_in(client, "demo-admin-token"))
    assert "secure" in [part.strip().lower() for part in cookie.split(";")]


def test_an_unknown_token_is_refused_and_no_session_is_made(app_client: TestClient) -> None:
    response = sign_in(app_client, "not-a-token")
    assert response.status_code == 401 and "not known" in response.text
    assert SESSION_COOKIE + "=" not in response.headers.get("set-cookie", "")
    assert app_client.get("/console", follow_redirects=False).headers["location"] == "/console/sign-in"


def test_pages_need_a_session(app_client: TestClient) -> None:
    for path in ("/console", "/console/orders/ORD-1", "/console/outbox", "/console/alerts",
                 "/console/sites/site-a/dry-run"):
        response = app_client.get(path, follow_redirects=False)
        assert (response.status_code, response.headers["location"]) == (303, "/console/sign-in"), path


def test_a_tampered_or_foreign_cookie_is_no_session(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-site-a-token")
    value = app_client.cookies[SESSION_COOKIE]
    body, mac = value.split(".")
    for forged in (body + "." + mac[:-2] + "AA", body[:-2] + "." + mac, "x" * 5000, "a.b.c"):
        app_client.cookies.set(SESSION_COOKIE, forged, path="/console")
        assert app_client.get("/console", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_even_for_a_copied_cookie(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-site-a-token")
    copy = app_client.cookies[SESSION_COOKIE]
    response = post_form(app_client, "/console/sign-out", {})
    assert (response.status_code, response.headers["location"]) == (303, "/console/sign-in")
    assert 'max-age=0' in _set_cookie(response).lower()
    app_client.cookies.set(SESSION_COOKIE, copy, path="/console")
    assert app_client.get("/console", follow_redirects=False).status_code == 303


def test_a_sign_out_on_one_process_ends_the_session_on_every_other(queued: Settings, engine: Engine) -> None:
    """Two apps on one database with one session key stand for two ``serve`` processes (or hosts): a
    cookie signed out on one is refused by the other; the rows of expired sessions are forgotten."""
    shared = queued.model_copy(update={"console_session_key": "k" * 40})
    with TestClient(create_app(shared, engine=engine), raise_server_exceptions=False) as one, \
            TestClient(create_app(shared, engine=engine), raise_server_exceptions=False) as other:
        _signed_in(one, "demo-site-a-token")
        copy = one.cookies[SESSION_COOKIE]
        other.cookies.set(SESSION_COOKIE, copy, path="/console")
        assert other.get("/console", follow_redirects=False).status_code == 200  # the same session
        assert post_form(one, "/console/sign-out", {}).status_code == 303
        assert other.get("/console", follow_redirects=False).headers["location"] == "/console/sign-in"
        signed_out = SignedOutRow.__table__  # type: ignore[attr-defined]
        with engine.begin() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(signed_out)).scalar_one() == 1
            conn.execute(sa.update(signed_out).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        _signed_in(other, "demo-site-a-token")
        assert post_form(other, "/console/sign-out", {}).status_code == 303
        with engine.connect() as conn:  # the expired one is gone, the new one is kept
            rows = conn.execute(sa.select(signed_out.c.expires_at)).all()
        assert len(rows) == 1 and as_utc(rows[0].expires_at) > datetime.now(UTC)


def test_revoking_a_token_ends_its_console_sessions(app_client: TestClient, queued: Settings,
                                                    engine: Engine) -> None:
    token = create_token(engine, queued, role="site:site-a", name="analyst", now=datetime.now(UTC))
    _signed_in(app_client, token)
    assert app_client.get("/console").status_code == 200
    with engine.begin() as conn:
        conn.execute(sa.update(ApiClientRow.__table__).values(revoked_at=datetime.now(UTC)))  # type: ignore[attr-defined]
    assert app_client.get("/console", follow_redirects=False).headers["location"] == "/console/sign-in"


# ----------------------------------------------------------------------------- CSRF


def test_posts_without_a_valid_csrf_token_are_refused(app_client: TestClient) -> None:
    # the sign-in form itself
    assert app_client.post("/console/sign-in", data={"token": "demo-admin-token"}).status_code == 403
    _signed_in(app_client, "demo-admin-token")
    for path, data in (("/console/search", {"q": "ORD-1"}), ("/console/sign-out", {}),
                       ("/console/outbox/retry", {"ids": "1"}),
                       ("/console/outbox/skip", {"ids": "1", "reason": "x"}),
                       ("/console/sites/site-a/dry-run", {"profile_yaml": "x", "order": "1"})):
        for csrf in (None, "", "forged", csrf_of(app_client.get("/console").text)[:-1] + "x"):
            body = dict(data) if csrf is None else {**data, "csrf": csrf}
            response = app_client.post(path, data=body, follow_redirects=False)
            assert response.status_code == 403, (path, csrf)
            assert "security token" in response.text
    assert app_client.get("/console").status_code == 200  # sign-out was refused too


def test_another_sessions_csrf_token_is_refused(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-admin-token")
    old = csrf_of(app_client.get("/console").text)
    _signed_in(app_client, "demo-admin-token")
    response = app_client.post("/console/search", data={"csrf": old, "q": "ORD-1"})
    assert response.status_code == 403


def test_a_post_that_is_not_a_form_is_refused(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-admin-token")
    csrf = csrf_of(app_client.get("/console").text)
    response = app_client.post("/console/search", json={"csrf": csrf, "q": "ORD-1"})
    assert response.status_code == 403  # a JSON body carries no form field: no CSRF token
    response = app_client.post("/console/search", content=b"csrf=" + csrf.encode() + b"&q=\xff",
                               headers={"content-type": "application/x-www-form-urlencoded"})
    assert response.status_code == 403


# ----------------------------------------------------------------------------- tenants


def test_another_tenants_order_is_the_same_404_page_as_no_order(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-site-b-token")
    foreign = app_client.get("/console/orders/ORD-1")
    missing = app_client.get("/console/orders/ORD-NONE")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.text.replace("ORD-1", "X") == missing.text.replace("ORD-NONE", "X")
    assert app_client.get("/console/orders/NOVA-1").status_code == 200
    _signed_in(app_client, "demo-nova-token")
    assert app_client.get("/console/orders/ORD-1").status_code == 404
    assert app_client.get("/console/orders/ORD-1?manufacturer_id=acme-bio").status_code == 404
    _signed_in(app_client, "demo-site-a-token")
    assert app_client.get("/console/orders/ORD-1").status_code == 200


def test_search_finds_only_the_tenants_orders(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-site-b-token")
    found = post_form(app_client, "/console/search", {"q": "ORD-1"})
    assert found.status_code == 200 and "/console/orders/ORD-1" not in found.text
    found = post_form(app_client, "/console/search", {"q": ACME_COI})
    assert "/console/orders/ORD-1" not in found.text


def test_queues_and_alerts_are_for_admin(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-site-a-token")
    assert app_client.get("/console/outbox").status_code == 403
    assert app_client.get("/console/alerts").status_code == 403
    assert post_form(app_client, "/console/outbox/retry", {"ids": "1"}).status_code == 403
    assert app_client.get("/console/sites/site-b/dry-run").status_code == 404
    _signed_in(app_client, "demo-admin-token")
    assert app_client.get("/console/outbox").status_code == 200
    assert app_client.get("/console/alerts").status_code == 200


# ----------------------------------------------------------------------------- search


@pytest.mark.parametrize("query", ["ORD-1", ACME_COI, ACME_COI[:-1], "&/" + ACME_COI, ACME_COI.lower(),
                                   f"  {ACME_COI}  ", PATIENT["mrn"]])
def test_site_a_finds_its_order_by_any_form(app_client: TestClient, query: str) -> None:
    _signed_in(app_client, "demo-site-a-token")
    found = post_form(app_client, "/console/search", {"q": query})
    assert found.status_code == 200
    assert 'href="/console/orders/ORD-1?manufacturer_id=acme-bio"' in found.text


def test_search_by_control_id_and_delivery_id(app_client: TestClient, engine: Engine) -> None:
    message = messages(engine, "site-a/mllp")[0]
    _signed_in(app_client, "demo-admin-token")
    for query in (message.control_id, str(message.id)):
        found = post_form(app_client, "/console/search", {"q": query})
        assert 'href="/console/orders/ORD-1?manufacturer_id=acme-bio"' in found.text, query


def test_a_manufacturer_does_not_search_by_mrn(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-acme-token")
    found = post_form(app_client, "/console/search", {"q": PATIENT["mrn"]})
    assert "/console/orders/ORD-1" not in found.text and "MRN search is for site and admin" in found.text


# ----------------------------------------------------------------------------- PHI and bounds


def test_no_phi_in_any_url_or_redirect(app_client: TestClient) -> None:
    _signed_in(app_client, "demo-site-a-token")
    found = post_form(app_client, "/console/search", {"q": PATIENT["mrn"]})
    assert found.status_code == 200 and "location" not in found.headers  # answered in place, no redirect
    pages = [found.text, app_client.get("/console").text, app_client.get("/console/orders/ORD-1").text]
    for html in pages:
        for url in re.findall(r'(?:href|action|src)="([^"]*)"', html):
            assert not any(value in url for value in PHI), url
    assert 'method="post" action="/console/search"' in pages[1]


def test_inputs_are_bounded(app_client: TestClient) -> None:
    assert sign_in(app_client, "x" * 9000).status_code == 400
    _signed_in(app_client, "demo-admin-token")
    assert post_form(app_client, "/console/search", {"q": "x" * 201}).status_code == 400
    response = post_form(app_client, "/console/outbox/retry", {"ids": [str(i) for i in range(1, 102)]})
    assert response.status_code == 400 and "At most 100" in response.text
    many = post_form(app_client, "/console/search", {"q": "a", **{f"f{i}": "1" for i in range(300)}})
    assert many.status_code == 403  # past the field cap the form is not read at all
    assert app_client.get("/console/outbox?after_id=-1").status_code == 400
    assert app_client.get("/console/outbox?after_id=99999999999999999999").status_code == 400
    assert app_client.get("/console/orders/" + "x" * 65).status_code == 404
    assert app_client.get("/console/orders/ORD-1?manufacturer_id=%00").status_code == 404
    assert app_client.get("/console/no/such/page").status_code == 404
    for field in ({"q": "ORD\x001"}, {"q": "%ff"}):  # NUL, or bytes that are not UTF-8
        body = "&".join(f"{k}={quote(v, safe='%')}" for k, v in {**field, "csrf": csrf_of(
            app_client.get("/console").text)}.items())
        response = app_client.post("/console/search", content=body.encode(),
                                   headers={"content-type": "application/x-www-form-urlencoded"})
        assert response.status_code == 403, field


# ----------------------------------------------------------------------------- dead letters


def test_admin_retries_and_skips_dead_letters(app_client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        from gateway.delivery.outbox import OutboxMessage

        conn.execute(sa.update(OutboxMessage.__table__).values(  # type: ignore[attr-defined]
            state=MessageState.dead.value, finished_at=datetime.now(UTC), last_outcome="dead"))
    first, second = [m.id for m in messages(engine)][:2]
    _signed_in(app_client, "demo-admin-token")
    page = app_client.get("/console/outbox")
    assert f'name="one" value="{first}"' in page.text
    no_reason = post_form(app_client, "/console/outbox/skip", {"one": str(first), "reason": " "})
    assert no_reason.status_code == 400 and "needs a reason" in no_reason.text
    done = post_form(app_client, "/console/outbox/retry", {"one": str(first)}, page="/console/outbox")
    assert done.status_code == 200 and f"Message {first}: queued again" in done.text
    skipped = post_form(app_client, "/console/outbox/skip", {"ids": [str(first), str(second)],
                                                             "reason": "site asked"}, page="/console/outbox")
    assert f"Message {first}: skipped." in skipped.text and f"Message {second}: skipped." in skipped.text
    states = {m.id: (m.state, m.skip_reason) for m in messages(engine)}
    assert states[first] == states[second] == (MessageState.skipped, "site asked")
    again = post_form(app_client, "/console/outbox/retry", {"ids": [str(first), str(second)]},
                      page="/console/outbox")
    assert f"Message {first}: queued again" in again.text and f"Message {second}: queued again" in again.text
    assert {m.id: m.state for m in messages(engine)}[second] == MessageState.pending
    twice = post_form(app_client, "/console/outbox/retry", {"one": str(second)}, page="/console/outbox")
    assert f"Message {second}: message {second} is pending; only dead or skipped" in twice.text


# ----------------------------------------------------------------------------- alerts


def test_open_alerts_come_first_and_are_acknowledged_with_a_note(app_client: TestClient,
                                                                 engine: Engine) -> None:
    from gateway.delivery.outbox import DeliveryAlert

    with engine.begin() as conn:
        for kind in ("dead-letter", "warning"):
            conn.execute(sa.insert(DeliveryAlert.__table__).values(  # type: ignore[attr-defined]
                at=datetime.now(UTC), destination="site-a/mllp", message_id=1, kind=kind,
                detail=f"{kind} detail"))
    with engine.connect() as conn:
        first = conn.execute(sa.select(sa.func.min(DeliveryAlert.__table__.c.id))).scalar_one()  # type: ignore[attr-defined]
    ack = f"/console/alerts/{first}/ack"
    _signed_in(app_client, "demo-site-a-token")
    assert post_form(app_client, ack, {"note": "x"}).status_code == 403
    _signed_in(app_client, "demo-admin-token")
    page = app_client.get("/console/alerts").text
    assert page.index("warning detail") < page.index("dead-letter detail") < page.index("None yet.")
    assert app_client.post(ack, data={"note": "seen"}).status_code == 403  # no CSRF
    no_note = post_form(app_client, ack, {"note": "  "})
    assert no_note.status_code == 400 and "needs a note" in no_note.text
    done = post_form(app_client, ack, {"note": "site engine fixed, replayed"})
    assert done.status_code == 200 and f"Alert {first} acknowledged." in done.text
    open_part, acked_part = done.text.split("<h2>Acknowledged</h2>")
    assert "dead-letter detail" not in open_part and "warning detail" in open_part
    assert "site engine fixed, replayed" in acked_part and "demo admin" in acked_part
    again = post_form(app_client, ack, {"note": "again"})
    assert "already acknowledged" in again.text
    assert "does not exist" in post_form(app_client, f"/console/alerts/{first + 99}/ack", {"note": "n"}).text
    assert post_form(app_client, "/console/alerts/0/ack", {"note": "n"}).status_code == 404


def test_the_order_list_is_paged(app_client: TestClient) -> None:
    from tests.conftest import isbt_coi

    for n in range(1, 51):
        body = order_body(f"PAGE-{n:02d}", coi=isbt_coi(n),
                          patient={**PATIENT, "mrn": f"MRN-P{n}"})
        assert app_client.post("/v1/orders", json=body, headers=ACME).status_code == 201
    _signed_in(app_client, "demo-admin-token")
    first = app_client.get("/console").text
    assert first.count('<tr><td><a href="/console/orders/') == 50
    assert "PAGE-50" in first and "ORD-1" not in first
    older = re.search(r'href="(/console\?before=[0-9]+-[0-9]+)"', first)
    assert older is not None
    second = app_client.get(older.group(1)).text
    assert second.count('<tr><td><a href="/console/orders/') == 2  # ORD-1 and NOVA-1, placed first
    assert "Older orders" not in second
    assert app_client.get("/console?before=1-x").status_code == 400


def test_an_order_id_two_manufacturers_use_asks_which(app_client: TestClient) -> None:
    same_id = nova_order_body("ORD-1", site_id="site-a", coi="NC-000999")
    assert app_client.post("/v1/orders", json=same_id, headers=NOVA).status_code == 201
    _signed_in(app_client, "demo-site-a-token")
    page = app_client.get("/console/orders/ORD-1")
    assert page.status_code == 200 and "Several manufacturers use this order id" in page.text
    assert 'href="/console/orders/ORD-1?manufacturer_id=acme-bio"' in page.text
    assert 'href="/console/orders/ORD-1?manufacturer_id=nova-cell"' in page.text
    assert "CART-CD19" in app_client.get("/console/orders/ORD-1?manufacturer_id=acme-bio").text
    _signed_in(app_client, "demo-acme-token")  # a manufacturer sees only its own: no question
    assert "CART-CD19" in app_client.get("/console/orders/ORD-1").text
    assert app_client.get("/console/", follow_redirects=False).headers["location"] == "/console"


# ----------------------------------------------------------------------------- OAuth access tokens


@dataclass(frozen=True)
class ScopedPrincipal(Principal):
    """Issue 14's principal: an OAuth access token's scopes (None: a static token)."""

    scopes: frozenset[str] | None = None

    def has_scope(self, atom: str) -> bool:
        return self.scopes is None or atom in self.scopes

    @classmethod
    def from_role(cls, role: str, client_id: str = "",  # type: ignore[override]
                  scopes: frozenset[str] | None = None) -> ScopedPrincipal:
        kind, subject = parse_role(role)
        return cls(kind, subject, client_id, scopes)


OAUTH = {"cgt_at_orders": ("site:site-a", {"orders.read"}),
         "cgt_at_fhir_only": ("site:site-a", {"system/Task.rs"}),
         "cgt_at_admin_reader": ("admin", {"orders.read"})}


@pytest.fixture
def oauth(monkeypatch: pytest.MonkeyPatch) -> None:
    """The console as it runs once issue 14's OAuth is merged: principals carry their token's scopes."""
    import gateway.console.routes as routes
    import gateway.console.session as session

    real = routes.principal_for_token

    def principal_for_token(token: str, settings: Settings, engine: Engine) -> Principal | None:
        if token in OAUTH:
            role, scopes = OAUTH[token]
            return ScopedPrincipal.from_role(role, "oauth-client", frozenset(scopes))
        return real(token, settings, engine)

    monkeypatch.setattr(routes, "principal_for_token", principal_for_token)
    monkeypatch.setattr(session, "Principal", ScopedPrincipal)


@pytest.mark.usefixtures("oauth")
def test_an_oauth_token_opens_what_its_scopes_allow(app_client: TestClient) -> None:
    refused = sign_in(app_client, "cgt_at_fhir_only")
    assert refused.status_code == 403 and "neither orders.read nor admin" in refused.text
    _signed_in(app_client, "cgt_at_orders")
    assert '"s":["orders.read"]' in base64.urlsafe_b64decode(
        app_client.cookies[SESSION_COOKIE].split(".")[0] + "==").decode()
    assert app_client.get("/console/orders/ORD-1").status_code == 200
    assert 'orders/ORD-1?' in post_form(app_client, "/console/search", {"q": "ORD-1"}).text
    _signed_in(app_client, "cgt_at_admin_reader")  # an admin client without the admin scope
    assert app_client.get("/console/orders/NOVA-1").status_code == 200
    assert app_client.get("/console/outbox").status_code == 403
    assert app_client.get("/console/alerts").status_code == 403
    assert post_form(app_client, "/console/outbox/retry", {"ids": "1"}).status_code == 403
