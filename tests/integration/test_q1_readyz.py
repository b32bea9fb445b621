"""``/readyz`` answers 503 ``not-ready`` (problem+json) when the database cannot be reached, while
``/healthz`` still answers 200: the process is up."""

from __future__ import annotations

from gateway.bootstrap import create_app
from gateway.config import DEMO_CONFIG, load_settings
from gateway.store.db import make_engine
from tests.conftest import TestClient  # imported there with the httpx deprecation warning silenced


def test_readyz_is_503_when_the_database_is_unreachable():
    url = "postgresql://nobody@127.0.0.1:1/none"  # nothing listens on port 1: connection refused
    settings = load_settings(DEMO_CONFIG, database_url=url)
    engine = make_engine(url)
    try:
        with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 503
            assert ready.headers["content-type"] == "application/problem+json"
            assert ready.json()["code"] == "not-ready"
            assert client.get("/healthz").json() == {"status": "ok"}
    finally:
        engine.dispose()
