"""Release specifications (``>=80``, ``<5``, ``1-5``, ``negative``) and out-of-specification flags.

A specification is parsed into bounds or an expected text; :func:`interpret` returns the
v3-ObservationInterpretation code for a value: ``N`` within specification, ``H`` above, ``L``
below, ``A`` for a qualitative result that differs from the expected one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Specification", "parse_specification", "interpret"]

Interpretation = Literal["N", "H", "L", "A"]

_NUMBER = r"[-+]?\d+(?:\.\d+)?"
_BOUND = re.compile(rf"^\s*(>=|<=|>|<|≥|≤)\s*({_NUMBER})\s*$")
_RANGE = re.compile(rf"^\s*({_NUMBER})\s*(?:-|–|to|\.\.)\s*({_NUMBER})\s*$")
_TEXT = re.compile(r"^[A-Za-z][A-Za-z \-]*$")


@dataclass(frozen=True)
class Specification:
    text: str
    low: float | None = None
    low_inclusive: bool = True
    high: float | None = None
    high_inclusive: bool = True
    expected: str | None = None  # qualitative specification, compared case-insensitively

    @property
    def numeric(self) -> bool:
        return self.expected is None


def parse_specification(text: str) -> Specification | None:
    """Parse a specification; ``None`` when it has none of the understood shapes."""
    if m := _BOUND.match(text):
        op, number = m.group(1), float(m.group(2))
        if op in (">=", "≥"):
            return Specification(text, low=number)
        if op == ">":
            return Specification(text, low=number, low_inclusive=False)
        if op in ("<=", "≤"):
            return Specification(text, high=number)
        return Specification(text, high=number, high_inclusive=False)
    if m := _RANGE.match(text):
        low, high = float(m.group(1)), float(m.group(2))
        if low > high:
            return None
        return Specification(text, low=low, high=high)
    if _TEXT.match(text.strip()):
        return Specification(text, expected=text.strip().lower())
    return None


def interpret(spec: Specification, value: float | str) -> Interpretation | None:
    """Interpretation of ``value`` against ``spec``; ``None`` when they cannot be compared."""
    if spec.expected is not None:
        if not isinstance(value, str):
            return None
        return "N" if value.strip().lower() == spec.expected else "A"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if spec.low is not None and (value < spec.low or (value == spec.low and not spec.low_inclusive)):
        return "L"
    if spec.high is not None and (value > spec.high or (value == spec.high and not spec.high_inclusive)):
        return "H"
    return "N"
