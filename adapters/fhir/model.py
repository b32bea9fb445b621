"""The one door every built resource goes through: validate with the R4B model, dump as FHIR JSON."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

from adapters.fhir.codes import PROFILE_VERSION_TAG_SYSTEM

__all__ = ["validated", "fhir_instant", "fhir_date", "profile_meta", "UNVERSIONED"]

UNVERSIONED = "unversioned"


def validated(resource: dict[str, Any]) -> dict[str, Any]:
    """Validate ``resource`` against its R4B model and return the model's JSON dump.

    Raises ``pydantic.ValidationError`` for a structurally invalid resource: that is a bug in a
    builder, never a data problem (data problems are caught before and reported as issues).
    """
    model = get_fhir_model_class(resource["resourceType"])
    dumped: dict[str, Any] = model.model_validate(resource).model_dump(mode="json", exclude_none=True)
    return dumped


def fhir_instant(moment: datetime) -> str:
    """A FHIR instant in UTC (``2026-01-05T14:30:00Z``); a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.astimezone(UTC).isoformat(timespec=spec).replace("+00:00", "Z")


def fhir_date(day: date) -> str:
    return day.isoformat()


def profile_meta(profile_version: str) -> dict[str, Any]:
    """``meta.tag`` naming the site-profile version that produced the resource."""
    return {"tag": [{"system": PROFILE_VERSION_TAG_SYSTEM, "code": profile_version or UNVERSIONED}]}
