"""``cgt-gateway serve`` runs uvicorn on the configured event loop and HTTP parser."""

from __future__ import annotations

import logging
import pickle

import pytest
import uvicorn
from pydantic import ValidationError
from typer.testing import CliRunner
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.cli.main import app
from gateway.config import load_settings


@pytest.fixture
def captured_run(monkeypatch, tmp_path):
    """uvicorn.run replaced by a recorder; the logging serve configures is put back afterwards."""
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", f"sqlite:///{tmp_path / 'serve.db'}")
    calls: list[dict[str, object]] = []
    monkeypatch.setattr(uvicorn, "run", lambda application, **kwargs: calls.append(kwargs))
    names = ("", "uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    yield calls
    for n, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(n)
        logger.handlers[:], logger.propagate = handlers, propagate
        logger.setLevel(level)


def test_serve_defaults_to_uvicorn_auto_loop_and_parser(captured_run):
    result = CliRunner().invoke(app, ["serve", "--no-worker"])
    assert result.exit_code == 0, result.output
    assert len(captured_run) == 1
    # "auto": httptools when it imports (it is installed here), wrapped with the read deadlines
    assert captured_run[0]["loop"] == "auto"
    # a partial of a module-level class (picklable: serve --processes hands it to its children)
    assert issubclass(captured_run[0]["http"].func, HttpToolsProtocol)
    assert pickle.loads(pickle.dumps(captured_run[0]["http"])).keywords == captured_run[0]["http"].keywords
    assert captured_run[0]["limit_concurrency"] == 256 and captured_run[0]["timeout_keep_alive"] == 5


def test_serve_takes_the_loop_and_parser_from_the_environment(captured_run, monkeypatch):
    monkeypatch.setenv("CGT_GATEWAY_SERVER_LOOP", "asyncio")
    monkeypatch.setenv("CGT_GATEWAY_SERVER_HTTP", "h11")
    result = CliRunner().invoke(app, ["serve", "--no-worker"])
    assert result.exit_code == 0, result.output
    assert captured_run[0]["loop"] == "asyncio" and issubclass(captured_run[0]["http"].func, H11Protocol)


def test_an_unknown_loop_or_parser_is_refused():
    with pytest.raises(ValidationError, match="server_loop"):
        load_settings(server_loop="twisted")
    with pytest.raises(ValidationError, match="server_http"):
        load_settings(server_http="http3")
