"""An order as the manufacturer posts it (``POST /v1/orders``): patient, provider,
requested dates.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
)

from mappings.domain import StrictModel
from mappings.strict_types import Day

__all__ = ["npi_is_valid", "NonEmpty", "Identifier", "Patient", "Provider", "Requested", "OrderIn"]


_NPI = re.compile(r"^\d{10}$")


def npi_is_valid(npi: str) -> bool:
    """NPI check digit: Luhn over the prefix 80840 + the first nine digits."""
    if not _NPI.match(npi):
        return False
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10 == int(npi[9])


NonEmpty = Annotated[str, Field(min_length=1, max_length=200)]


Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")]


class Patient(StrictModel):
    mrn: Annotated[str, Field(min_length=1, max_length=64)]
    family: NonEmpty
    given: Annotated[list[NonEmpty], Field(min_length=1, max_length=5)]
    birth_date: Day
    sex: Literal["male", "female", "other", "unknown"]


class Provider(StrictModel):
    npi: str
    family: NonEmpty
    given: Annotated[list[NonEmpty], Field(min_length=1, max_length=5)]

    @field_validator("npi")
    @classmethod
    def _check_npi(cls, value: str) -> str:
        if not npi_is_valid(value):
            raise ValueError("must be a 10-digit NPI with a valid check digit")
        return value


class Requested(StrictModel):
    apheresis_date: Day | None = None
    infusion_date: Day | None = None

    @field_validator("infusion_date")
    @classmethod
    def _not_before_apheresis(cls, value: date | None, info: ValidationInfo) -> date | None:
        apheresis = info.data.get("apheresis_date")
        if value is not None and apheresis is not None and value < apheresis:
            raise ValueError("must not be before apheresis_date (the cells are collected first)")
        return value


class OrderIn(StrictModel):
    """Body of ``POST /v1/orders``."""

    order_id: Identifier
    coi: Annotated[str, Field(min_length=1, max_length=64)]
    product_code: Identifier
    site_id: Identifier
    patient: Patient
    ordering_provider: Provider
    requested: Requested = Requested()
    priority: Literal["routine", "urgent"]
    note: Annotated[str, Field(max_length=2000)] | None = None
