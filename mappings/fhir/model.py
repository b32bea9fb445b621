"""The one door every built resource goes through: validate with the R4B model, dump as FHIR JSON."""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime
from typing import Any

import orjson

from mappings.fhir.codes import PROFILE_VERSION_TAG_SYSTEM
from mappings.fhir.compiled_validation import compiled_dump, full_validate

__all__ = ["validated", "fhir_instant", "fhir_date", "profile_meta", "UNVERSIONED"]

UNVERSIONED = "unversioned"


#: Distinct resource contents whose validated dump is kept (about 3 KiB each, both ways).
VALIDATED_CACHE_SIZE = 4096
_PLAIN_JSON = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
               | orjson.OPT_PASSTHROUGH_SUBCLASS)


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate ``resource`` against its R4B model and return the model's JSON dump (a new dict).

    The dump is a pure function of the resource's JSON content, and most resources repeat from one
    event of an order to the next (Organizations, Practitioner, Patient, ServiceRequest, products),
    so each distinct content is validated once and its dump kept in a bounded LRU cache keyed by
    that content; repeats cost one ``orjson`` round trip.  New content goes through the validator
    compiled from the R4B models (``mappings.fhir.compiled_validation``), which proves what the R4B
    dump is or falls back to the R4B ``model_validate`` + ``model_dump``.  Content that is not
    plain JSON (datetimes, dataclasses, subclasses of str/int/dict/list) is validated every time.

    Raises ``pydantic.ValidationError`` for a structurally invalid resource: that is a bug in a
    builder, never a data problem (data problems are caught before and reported as issues).
    Invalid content is never cached, so it raises every time.
    """
    try:
        content = orjson.dumps(resource, option=_PLAIN_JSON)
    except TypeError:
        return full_validate(resource, learn=False)
    return orjson.loads(_validated_json(content))  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=VALIDATED_CACHE_SIZE)
def _validated_json(content: bytes) -> bytes:
    resource = orjson.loads(content)
    dumped = compiled_dump(resource, content)  # None: not proven, and ``resource`` left untouched
    if dumped is not None:
        return dumped
    return orjson.dumps(full_validate(resource))


def _validate(resource: dict[str, Any]) -> dict[str, Any]:
    """The R4B ``model_validate`` + ``model_dump`` (it also teaches the compiled validator)."""
    return full_validate(resource)


def fhir_instant(moment: datetime) -> str:
    """A FHIR instant in UTC, to the millisecond, written as R4B dumps it: ``2026-01-05T14:30:00Z``,
    or with six fraction digits (``2026-01-05T14:30:00.250000Z``) when there is a fraction.

    R4B parses an instant into a ``datetime`` and dumps its ``isoformat``, so ``.250Z`` would come
    back as ``.250000Z``: writing it that way up front makes the builder's output equal to the dump,
    which is what lets the compiled validator answer for resources stamped with the server clock.
    A naive datetime is taken as UTC.
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC).replace(microsecond=moment.microsecond // 1000 * 1000)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def fhir_date(day: date) -> str:
    return day.isoformat()


def profile_meta(profile_version: str) -> dict[str, Any]:
    """``meta.tag`` naming the site-profile version that produced the resource."""
    return {"tag": [{"system": PROFILE_VERSION_TAG_SYSTEM, "code": profile_version or UNVERSIONED}]}
