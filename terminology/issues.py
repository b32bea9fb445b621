"""A mapping issue: what translation and terminology report instead of failing at run time.

Defined here, at the bottom layer, because terminology's ``*_or_fallback`` lookups report one;
:mod:`mappings.result` (what translation returns) exposes it as part of a ``Translation``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MappingIssue"]


@dataclass(frozen=True)
class MappingIssue:
    """A problem found while mapping; at run time errors fall back to our own codes and warn."""

    severity: Literal["fatal", "error", "warning", "information"]
    code: str  # stable machine code, e.g. "unmapped-code"
    path: str  # where: "event.data.measurements[0].code", "profile.products.CART-CD19"
    message: str
