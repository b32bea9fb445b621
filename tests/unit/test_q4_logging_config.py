"""Q4 (outside QA): ``configure_logging`` run in-process (a CLI command under CliRunner, which swaps
``sys.stderr`` for a capture it closes afterwards) must not leave the root logger writing to a
closed stream: later log lines went to "--- Logging error --- I/O operation on closed file"."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator

import pytest

from gateway.logging_config import configure_logging


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    uvicorn = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
               for name in ("uvicorn", "uvicorn.error", "uvicorn.access")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, (saved, propagate) in uvicorn.items():
        logging.getLogger(name).handlers[:] = saved
        logging.getLogger(name).propagate = propagate


def test_the_handler_writes_to_the_current_stderr(monkeypatch, restore_logging):
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("INFO")
    logging.getLogger("q4").info("one")
    assert '"msg":"one"' in first.getvalue()
    first.close()  # what CliRunner does to its capture when the command returns
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("q4").info("two")
    assert '"msg":"two"' in second.getvalue()
    assert "Logging error" not in second.getvalue()


def test_configuring_twice_leaves_one_handler(monkeypatch, restore_logging):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    configure_logging("INFO")
    configure_logging("DEBUG")
    root = logging.getLogger()
    assert len(root.handlers) == 1 and root.level == logging.DEBUG
    logging.getLogger("q4").debug("once")
    assert sys.stderr.getvalue().count('"msg":"once"') == 1
