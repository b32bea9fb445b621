"""Issue 11: absolute URLs come from ``public_base_url`` (default ``http://{host}:{port}``), never from
the request's ``Host`` header, so a forged ``Host: evil.example`` cannot poison a cache with links to
another server: Bundle ``fullUrl``, paging links, history links and ``/fhir/metadata``."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.bootstrap import create_app
from gateway.config import DEMO_CONFIG, load_settings
from tests.conftest import SITE_A, TestClient
from tests.integration.test_fhir_api import by_type, ok
from tests.integration.test_fhir_store_support import T0, seed_order

EVIL = {"Host": "evil.example"}
PUBLIC = "https://gateway.example.org/cgt"


@pytest.fixture
def public_client(engine, clock):
    settings = load_settings(DEMO_CONFIG, database_url=engine.url.render_as_string(hide_password=False),
                             public_base_url=PUBLIC + "/")
    with TestClient(create_app(settings, engine=engine, now=clock), raise_server_exceptions=False) as client:
        yield client


def _urls(bundle: dict) -> list[str]:
    return [link["url"] for link in bundle["link"]] + [e["fullUrl"] for e in bundle.get("entry", [])]


def test_a_forged_host_is_never_reflected(public_client, engine):
    for n in range(3):
        seed_order(engine, f"o{n}", now=T0 + timedelta(minutes=n))
    headers = {**SITE_A, **EVIL}
    search = ok(public_client.get("/fhir/Task?_count=1", headers=headers))
    assert [link["relation"] for link in search["link"]] == ["self", "next"]
    following = ok(public_client.get(search["link"][1]["url"].removeprefix(PUBLIC), headers=headers))
    post = ok(public_client.post("/fhir/Task/_search", content="_count=1", headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"}))
    task_id = search["entry"][0]["resource"]["id"]
    history = ok(public_client.get(f"/fhir/Task/{task_id}/_history", headers=headers))
    type_history = ok(public_client.get("/fhir/Task/_history?_count=1", headers=headers))
    metadata = ok(public_client.get("/fhir/metadata", headers=EVIL))
    urls = [u for b in (search, following, post, history, type_history) for u in _urls(b)]
    urls.append(metadata["implementation"]["url"])
    assert all(u.startswith(PUBLIC + "/fhir") for u in urls), urls
    assert not any("evil.example" in u for u in urls)
    assert metadata["implementation"]["url"] == PUBLIC + "/fhir"
    assert search["entry"][0]["fullUrl"] == f"{PUBLIC}/fhir/Task/{task_id}"


def test_reference_urls_are_compared_with_the_public_base_url(public_client, engine):
    resources = seed_order(engine, "o1", now=T0)
    focus = by_type(resources, "ServiceRequest")["id"]
    task = by_type(resources, "Task")["id"]
    found = ok(public_client.get("/fhir/Task", params={"focus": f"{PUBLIC}/fhir/ServiceRequest/{focus}"},
                                 headers={**SITE_A, **EVIL}))
    assert [e["resource"]["id"] for e in found["entry"]] == [task]
    # the forged Host's URL is not this server's, whatever Host the request names
    forged = public_client.get("/fhir/Task", params={"focus": f"http://evil.example/fhir/ServiceRequest/{focus}"},
                               headers={**SITE_A, **EVIL})
    assert forged.status_code == 400 and forged.json()["issue"][0]["expression"] == ["focus"]


def test_an_unset_public_base_url_follows_host_and_port():
    assert load_settings(DEMO_CONFIG).public_base_url == "http://127.0.0.1:8080"
    assert load_settings(DEMO_CONFIG, host="10.1.2.3", port=9443).public_base_url == "http://10.1.2.3:9443"
    assert load_settings(DEMO_CONFIG, host="::1", port=8000).public_base_url == "http://[::1]:8000"
    assert load_settings(DEMO_CONFIG, public_base_url="https://gw.example.org/").public_base_url == \
        "https://gw.example.org"
    with pytest.raises(ValueError, match="public_base_url"):
        load_settings(DEMO_CONFIG, public_base_url="javascript:alert(1)")


@pytest.mark.parametrize("path", ["/v1/orders/", "/healthz/", "/v1/admin/outbox/", "/metrics/",
                                  "/fhir/Task/"])
def test_no_redirect_reflects_the_host(public_client, path):
    """Starlette's trailing-slash redirect built its Location from the Host header: none are made."""
    response = public_client.get(path, headers={**SITE_A, **EVIL}, follow_redirects=False)
    assert response.status_code == 404, response.headers
    assert "location" not in response.headers and "evil.example" not in response.text
