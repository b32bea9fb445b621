"""Field types that take from JSON exactly what the API documents, and nothing it happens to coerce.

FastAPI validates a request body in pydantic's *lax* Python mode, which turns a JSON number into a
time (``1795000000`` -> 2026-11-18T11:06:40Z), a string into a number (``"4.1"``) and ``true`` into
``1.0``.  Pydantic's strict mode cannot be used instead: in Python mode it refuses the ISO strings
that JSON carries for dates.  These annotated types keep the ISO strings valid and refuse the rest:

* :data:`Instant` -- a date-time with a time zone, given as an ISO 8601 string
  (``2026-11-25T09:00:00Z``); a number, or a string of digits, is refused.
* :data:`Day` -- a calendar date given as an ISO 8601 string (``1980-04-12``).
* :data:`Number` -- a JSON number; a string or a boolean is refused.

Python callers may still pass ``datetime`` / ``date`` / ``int`` / ``float`` objects.  Every date and
time error names the expected form with an example (:data:`DATETIME_EXAMPLE`, :data:`DATE_EXAMPLE`).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, Strict, ValidationError, ValidatorFunctionWrapHandler, WrapValidator

__all__ = [
    "DATETIME_EXAMPLE",
    "DATE_EXAMPLE",
    "DATETIME_FORM",
    "DATE_FORM",
    "Instant",
    "Day",
    "Number",
]

DATETIME_EXAMPLE = "2026-11-25T09:00:00Z"
DATE_EXAMPLE = "1980-04-12"
DATETIME_FORM = f"an ISO 8601 date-time with a time zone, such as {DATETIME_EXAMPLE}"
DATE_FORM = f"an ISO 8601 date, such as {DATE_EXAMPLE}"

# The start every ISO date-time or date string has; a run of digits (a Unix time) has not.
_DATETIME_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _described(kind: str) -> str:
    return {"datetime": DATETIME_FORM, "date": DATE_FORM}[kind]


def _problem(value: Any, kind: str) -> str:
    if isinstance(value, bool):
        return f"must be {_described(kind)}, not true or false"
    if isinstance(value, int | float):
        return f"must be {_described(kind)}, not a number"
    if isinstance(value, str):
        return f"must be {_described(kind)}"
    return f"must be {_described(kind)}, given as a string"


def _instant(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, datetime):
        return handler(value)
    if not isinstance(value, str) or not _DATETIME_TEXT.match(value):
        raise ValueError(_problem(value, "datetime"))
    try:
        return handler(value)
    except ValidationError as exc:
        kinds = {error["type"] for error in exc.errors()}
        if kinds == {"timezone_aware"}:
            raise ValueError(
                f"must have a time zone (Z or an offset such as -05:00), such as {DATETIME_EXAMPLE}"
            ) from None
        raise ValueError(f"must be {DATETIME_FORM}") from None


def _day(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return handler(value)
    if not isinstance(value, str) or not _DATE_TEXT.match(value):
        raise ValueError(_problem(value, "date"))
    try:
        return handler(value)
    except ValidationError:
        raise ValueError(f"must be {DATE_FORM}") from None


Instant = Annotated[AwareDatetime, WrapValidator(_instant)]
Day = Annotated[date, WrapValidator(_day)]
Number = Annotated[float, Strict()]
