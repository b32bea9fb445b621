"""Terminology as data: our business-status CodeSystem, measurements -> LOINC + UCUM, HL7 tables.

The public surface other layers code against (see ``terminology.codes`` for the details).
No ``gateway`` imports here: terminology is part of the pure core.
"""

from terminology.codes import (
    BUSINESS_STATUS_SYSTEM,
    LOINC_SYSTEM,
    MEASUREMENT_SYSTEM,
    SNOMED_SYSTEM,
    UCUM_SYSTEM,
    Concept,
    MeasurementKind,
    Terminology,
    UnknownCode,
    load_loinc_allowlist,
    load_terminology,
)

__all__ = [
    "BUSINESS_STATUS_SYSTEM",
    "MEASUREMENT_SYSTEM",
    "LOINC_SYSTEM",
    "UCUM_SYSTEM",
    "SNOMED_SYSTEM",
    "Concept",
    "MeasurementKind",
    "UnknownCode",
    "Terminology",
    "load_terminology",
    "load_loinc_allowlist",
]
