"""Code systems and the code values we emit where ``fhir.resources`` does not enforce bindings.

The frozensets are the allowed values of each required binding we fill; tests check every emitted
resource against them.  ``UCUM_UNITS`` is the allow-list of UCUM codes the gateway puts in
``Quantity.code``; a unit outside it is sent as display text only, with a mapping warning.
"""

from __future__ import annotations

from typing import get_args

from mappings.domain import RequestStatus, TaskStatus
from mappings.ids import GATEWAY_BASE

__all__ = [
    "TASK_CODE_SYSTEM",
    "IDENTIFIER_TYPE_SYSTEM",
    "INTERPRETATION_SYSTEM",
    "OBSERVATION_CATEGORY_SYSTEM",
    "PARTICIPANT_TYPE_SYSTEM",
    "PROVENANCE_ENTITY_ROLES",
    "UCUM_SYSTEM",
    "PROFILE_VERSION_TAG_SYSTEM",
    "TASK_INPUT_SYSTEM",
    "PRODUCT_SYSTEM",
    "TASK_STATUSES",
    "TASK_INTENTS",
    "REQUEST_STATUSES",
    "REQUEST_INTENTS",
    "REQUEST_PRIORITIES",
    "OBSERVATION_STATUSES",
    "BDP_STATUSES",
    "BDP_CATEGORIES",
    "ADMINISTRATIVE_GENDERS",
    "INTERPRETATION_CODES",
    "UCUM_UNITS",
]

TASK_CODE_SYSTEM = "http://hl7.org/fhir/CodeSystem/task-code"
IDENTIFIER_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0203"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
PARTICIPANT_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
UCUM_SYSTEM = "http://unitsofmeasure.org"

# Our own systems (not terminology data: they name things the gateway itself emits).
PROFILE_VERSION_TAG_SYSTEM = f"{GATEWAY_BASE}/CodeSystem/site-profile-version"
TASK_INPUT_SYSTEM = f"{GATEWAY_BASE}/CodeSystem/cgt-task-input"
PRODUCT_SYSTEM = f"{GATEWAY_BASE}/CodeSystem/manufacturer-product"

TASK_STATUSES: frozenset[str] = frozenset(get_args(TaskStatus))
TASK_INTENTS = frozenset(
    {
        "unknown",
        "proposal",
        "plan",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
REQUEST_STATUSES: frozenset[str] = frozenset(get_args(RequestStatus))
REQUEST_INTENTS = frozenset(
    {
        "proposal",
        "plan",
        "directive",
        "order",
        "original-order",
        "reflex-order",
        "filler-order",
        "instance-order",
        "option",
    }
)
REQUEST_PRIORITIES = frozenset({"routine", "urgent", "asap", "stat"})
OBSERVATION_STATUSES = frozenset(
    {
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    }
)
BDP_STATUSES = frozenset({"available", "unavailable"})
BDP_CATEGORIES = frozenset({"organ", "tissue", "fluid", "cells", "biologicalAgent"})
PROVENANCE_ENTITY_ROLES = frozenset({"derivation", "revision", "quotation", "source", "removal"})
ADMINISTRATIVE_GENDERS = frozenset({"male", "female", "other", "unknown"})
INTERPRETATION_CODES = frozenset({"N", "H", "L", "A"})

# UCUM codes the gateway emits (cell counts, percentages, volumes, temperatures, endotoxin).
UCUM_UNITS = frozenset(
    {
        "%",
        "Cel",
        "mL",
        "L",
        "10*6",
        "10*9",
        "10*6/kg",
        "10*6/mL",
        "10*3/uL",
        "/uL",
        "[iU]/mL",
        "{EU}/mL",
        "{copies}/{cell}",
        "{#}",
        "1",
        "kg",
        "g",
        "h",
        "min",
    }
)
