"""HL7 v2 tables as data (``terminology/data/hl7_tables.json``): code -> display, and coding systems.

Pure: the file is read once.  The HL7v2 renderer takes its codes from its own mapping tables and
the tests check every emitted ORC-1, ORC-5, OBX-8, OBX-11 and PID-8 against these tables, since
hl7apy's STRICT validation does not check table values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

__all__ = ["Hl7Tables", "load_hl7_tables"]

LOCAL_CODING_SYSTEM = "L"


@dataclass(frozen=True)
class Hl7Tables:
    """HL7 tables keyed by their four-digit number (``"0119"``) and the FHIR->v2 coding-system map."""

    tables: Mapping[str, Mapping[str, str]]
    names: Mapping[str, str]
    coding_systems: Mapping[str, str]

    def table(self, number: str) -> Mapping[str, str]:
        """The codes of table ``number`` with their displays; ``KeyError`` for a table we do not hold."""
        return self.tables[number]

    def contains(self, number: str, code: str) -> bool:
        return code in self.tables[number]

    def display(self, number: str, code: str) -> str:
        """The display of ``code`` in table ``number``; ``KeyError`` if the code is not in the table."""
        return self.tables[number][code]

    def coding_system(self, system: str) -> str:
        """The HL7 v2 coding system (table 0396) for a FHIR system URI; ``L`` (local) if unknown."""
        return self.coding_systems.get(system, LOCAL_CODING_SYSTEM)


@cache
def load_hl7_tables() -> Hl7Tables:
    """The packaged HL7 tables (read once, shared, read-only)."""
    text = resources.files("terminology").joinpath("data", "hl7_tables.json").read_text(encoding="utf-8")
    raw: dict[str, Any] = json.loads(text)
    tables: dict[str, Mapping[str, str]] = {}
    names: dict[str, str] = {}
    for number, entries in raw["tables"].items():
        names[number] = entries.get("_name", "")
        tables[number] = MappingProxyType({k: v for k, v in entries.items() if not k.startswith("_")})
    systems = {k: v for k, v in raw["coding_systems"].items() if not k.startswith("_")}
    return Hl7Tables(MappingProxyType(tables), MappingProxyType(names), MappingProxyType(systems))
