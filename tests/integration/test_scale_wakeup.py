"""An order or event accepted through the API, by any server process, wakes the delivery workers of
every other process on PostgreSQL: its transaction sends ``NOTIFY cgt_outbox`` (issue 17).  The
listener here has its own connection, as another process's worker has."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from gateway.bootstrap import create_app
from gateway.config import load_settings
from gateway.delivery.wakeup import PgListener
from tests.conftest import ACME, TestClient, order_body
from tests.integration.test_delivery_support import write_config


def test_an_order_accepted_over_the_api_notifies_other_processes(engine: Engine, tmp_path: Path) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's (on SQLite, one process serves)")
    url = engine.url.render_as_string(hide_password=False)
    settings = load_settings(write_config(tmp_path, url, {"site-a": 9, "site-b": 9},
                                            demo_clients=True))  # the sites deliver over MLLP
    heard: queue.Queue[frozenset[str] | None] = queue.Queue()
    listener = PgListener(engine, heard.put).start()
    try:
        assert listener.listening.wait(10)
        assert heard.get(timeout=10) is None  # on connecting: check everything once
        with TestClient(create_app(settings, engine=engine), raise_server_exceptions=False) as client:
            assert client.post("/v1/orders", json=order_body("WAKE-1"), headers=ACME).status_code == 201
        assert heard.get(timeout=10) == frozenset({"site-a/mllp"})  # the site's queue got the order
    finally:
        listener.stop()
