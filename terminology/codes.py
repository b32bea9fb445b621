"""Code lookups backed by the data files in ``terminology/data/``.

Pure: the data files are read once by :func:`load_terminology`; lookups never touch the network,
a database or the clock.  Strict lookups (:meth:`Terminology.measurement`,
:meth:`Terminology.business_status`) raise :class:`UnknownCode`, for validate and preview time;
the ``*_or_fallback`` variants never raise and return our own code plus a warning issue, for run
time.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal, cast

from terminology.issues import MappingIssue

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

BUSINESS_STATUS_SYSTEM = "https://cgt-gateway.example.org/fhir/CodeSystem/cgt-business-status"
MEASUREMENT_SYSTEM = "https://cgt-gateway.example.org/fhir/CodeSystem/cgt-measurement"
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
SNOMED_SYSTEM = "http://snomed.info/sct"

MeasurementKind = Literal["quantity", "coded"]


@dataclass(frozen=True)
class Concept:
    """A code with its system and display; ``unit`` is the expected UCUM code (None if coded)."""

    system: str
    code: str
    display: str
    unit: str | None = None


class UnknownCode(KeyError):
    """A code that is not in our vocabulary (``vocabulary`` names which one)."""

    def __init__(self, vocabulary: str, code: str, known: tuple[str, ...]) -> None:
        super().__init__(code)
        self.vocabulary = vocabulary
        self.code = code
        self.known = known

    def __str__(self) -> str:
        return f"unknown {self.vocabulary} code {self.code!r}; expected one of: {', '.join(self.known)}"


@dataclass(frozen=True)
class _MeasurementEntry:
    concept: Concept
    own: Concept
    kind: MeasurementKind


class Terminology:
    """Our vocabularies: business statuses (our CodeSystem) and measurements (LOINC + UCUM or ours)."""

    def __init__(self, business_status_codesystem: dict[str, Any], measurements: dict[str, Any],
                 qualitative_results: dict[str, Any] | None = None) -> None:
        if business_status_codesystem.get("url") != BUSINESS_STATUS_SYSTEM:
            raise ValueError("business-status CodeSystem has an unexpected url")
        if measurements.get("own_system") != MEASUREMENT_SYSTEM:
            raise ValueError("measurement data has an unexpected own_system")
        self._codesystem = copy.deepcopy(business_status_codesystem)
        self._statuses: dict[str, Concept] = {
            c["code"]: Concept(BUSINESS_STATUS_SYSTEM, c["code"], c["display"], None)
            for c in business_status_codesystem["concept"]
        }
        self._definitions: dict[str, str] = {
            c["code"]: c["definition"] for c in business_status_codesystem["concept"]
        }
        self._measurements: dict[str, _MeasurementEntry] = {}
        for code, entry in measurements["measurements"].items():
            unit = entry["unit"]
            own = Concept(MEASUREMENT_SYSTEM, code, entry["display"], unit)
            loinc = entry.get("loinc")
            concept = Concept(LOINC_SYSTEM, loinc["code"], loinc["display"], unit) if loinc else own
            self._measurements[code] = _MeasurementEntry(concept, own, cast(MeasurementKind, entry["kind"]))
        self._answers: dict[str, dict[str, Concept]] = {}
        answers = qualitative_results or {"system": SNOMED_SYSTEM, "measurements": {}}
        for code, entries in answers["measurements"].items():
            if self._measurements[code].kind != "coded":  # KeyError for an unknown measurement: a data bug
                raise ValueError(f"qualitative answers for {code!r}, which is not a coded measurement")
            table = self._answers.setdefault(code, {})
            for entry in entries:
                answer = Concept(answers["system"], entry["code"], entry["display"], None)
                for text in entry["matches"]:
                    if _normal_text(text) in table:
                        raise ValueError(f"qualitative answer {text!r} of {code!r} listed twice")
                    table[_normal_text(text)] = answer

    # ------------------------------------------------------------------ business status

    def business_status_codes(self) -> tuple[str, ...]:
        return tuple(self._statuses)

    def business_status(self, status: str) -> Concept:
        """Our business-status concept for an ``OrderStatus`` value; raises :class:`UnknownCode`."""
        try:
            return self._statuses[str(status)]
        except KeyError:
            raise UnknownCode("business-status", str(status), self.business_status_codes()) from None

    def business_status_or_fallback(self, status: str, path: str = "business_status"
                                    ) -> tuple[Concept, MappingIssue | None]:
        """Never raises: an unknown status becomes a code in our CodeSystem plus a warning at ``path``."""
        try:
            return self.business_status(status), None
        except UnknownCode as exc:
            return Concept(BUSINESS_STATUS_SYSTEM, str(status), str(status), None), _warning(path, str(exc))

    def business_status_codesystem(self) -> dict[str, Any]:
        """The FHIR R4 CodeSystem resource of our business statuses (a fresh copy)."""
        return copy.deepcopy(self._codesystem)

    # ------------------------------------------------------------------ measurements

    def measurement_codes(self) -> tuple[str, ...]:
        return tuple(self._measurements)

    def measurement(self, code: str) -> Concept:
        """LOINC concept where one exists, else ours; ``unit`` is UCUM. Raises :class:`UnknownCode`."""
        return self._measurement_entry(code).concept

    def measurement_own(self, code: str) -> Concept:
        """The concept for ``code`` in our own measurement CodeSystem (also for LOINC-mapped codes)."""
        return self._measurement_entry(code).own

    def measurement_kind(self, code: str) -> MeasurementKind:
        """``quantity`` (valueQuantity with the UCUM unit) or ``coded`` (a coded/text result, no unit)."""
        return self._measurement_entry(code).kind

    def measurement_or_fallback(self, code: str, path: str = "measurement"
                                ) -> tuple[Concept, MappingIssue | None]:
        """Never raises: an unknown code becomes a code in our own CodeSystem plus a warning at ``path``."""
        try:
            return self.measurement(code), None
        except UnknownCode as exc:
            return Concept(MEASUREMENT_SYSTEM, str(code), str(code), None), _warning(path, str(exc))

    def qualitative_result(self, code: str, text: str) -> Concept | None:
        """The coded answer (SNOMED CT) for the result ``text`` of coded measurement ``code``, or None."""
        return self._answers.get(str(code), {}).get(_normal_text(text))

    def measurement_codesystem(self) -> dict[str, Any]:
        """Our own measurement CodeSystem (every code of the vocabulary) as a FHIR R4 resource."""
        return {
            "resourceType": "CodeSystem",
            "id": "cgt-measurement",
            "url": MEASUREMENT_SYSTEM,
            "version": self._codesystem.get("version", "1.0.0"),
            "name": "CgtMeasurement",
            "title": "CGT product measurements",
            "status": "active",
            "experimental": False,
            "publisher": "cgt-gateway",
            "description": "Measurements and release results of cell and gene therapy products that have "
                           "no LOINC code of their own; LOINC-mapped codes are listed too.",
            "caseSensitive": True,
            "content": "complete",
            "count": len(self._measurements),
            "concept": [{"code": code, "display": e.own.display} for code, e in self._measurements.items()],
        }

    def loinc_codes(self) -> frozenset[str]:
        """Every LOINC code this terminology can emit."""
        entries = self._measurements.values()
        return frozenset(e.concept.code for e in entries if e.concept.system == LOINC_SYSTEM)

    def _measurement_entry(self, code: str) -> _MeasurementEntry:
        try:
            return self._measurements[str(code)]
        except KeyError:
            raise UnknownCode("measurement", str(code), self.measurement_codes()) from None


def _normal_text(text: str) -> str:
    return " ".join(text.split()).casefold()


def _warning(path: str, message: str) -> MappingIssue:
    return MappingIssue(severity="warning", code="unmapped-code", path=path,
                        message=f"{message}; sent as our own code")


def _read_json(name: str) -> dict[str, Any]:
    text = resources.files("terminology").joinpath("data", name).read_text(encoding="utf-8")
    return cast(dict[str, Any], json.loads(text))


@cache
def load_terminology() -> Terminology:
    """Our terminology from the packaged data files (read once; the result is shared and read-only)."""
    return Terminology(_read_json("cgt-business-status.codesystem.json"), _read_json("measurements.json"),
                       _read_json("qualitative_results.json"))


def load_loinc_allowlist() -> dict[str, dict[str, str]]:
    """The LOINC codes we may emit, each with its display and where it was checked."""
    return cast(dict[str, dict[str, str]], _read_json("loinc_allowlist.json")["codes"])
