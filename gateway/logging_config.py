"""Structured (one JSON object per line) logging. Callers pass ids through ``extra``; patient
names, birth dates and MRNs are never passed to a logger anywhere in the gateway.

Access-log lines name the method, path and status but never the query string: a client may put
anything there (an EHR searching ``Patient?identifier=...|<MRN>`` or by name and birth date)."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = ["JsonFormatter", "DropQueryString", "configure_logging"]

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__  # no traceback text: it may quote input
        return orjson.dumps(entry, default=str).decode()


class DropQueryString(logging.Filter):
    """Cuts the query string from uvicorn access-log records (their third argument is the path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) > 2:
            path = record.args[2]
            if isinstance(path, str) and "?" in path:
                record.args = (*record.args[:2], path.partition("?")[0], *record.args[3:])
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the stream it was when
    the handler was made: a command run in-process (tests' CliRunner) swaps ``sys.stderr`` for a
    capture that it closes afterwards, which a bound handler would keep writing to."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # always the current sys.stderr


def configure_logging(level: str = "INFO") -> None:
    """JSON lines to stderr from the root logger; calling it again replaces the handler (idempotent)."""
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter())
    handler.addFilter(DropQueryString())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
