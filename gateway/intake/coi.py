"""Chain of Identity checks on what manufacturers send: the order's CoI and a collection's DIN.

Pure: each function returns the one stored normal form or raises :class:`gateway.errors.CoiError`
(HTTP 422) naming the field and the precise reason.

* ``isbt128`` products: :func:`terminology.isbt128.normalize_coi` (15 data characters + check).
* ``manufacturer`` products: the stripped value must match the product's declared regular
  expression in full; the normal form is the stripped value.  A product of that format without a
  pattern is a configuration error (:class:`ValueError`), never a reason to accept anything.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Literal

from gateway.errors import CoiError, FieldError
from terminology.isbt128 import normalize_coi, normalize_din

__all__ = ["looks_like_another", "normalize_product_coi", "normalize_din_field"]

_COI_POINTER = "/coi"


def looks_like_another(value: str) -> bool:
    """An identifier compared exactly as sent (a lot, an MRN) must not display like another one:
    blanks around it, or control, format (zero-width, bidi), separator or unassigned characters."""
    return value != value.strip() or any(
        unicodedata.category(ch)[0] == "C" or (unicodedata.category(ch)[0] == "Z" and ch != " ")
        for ch in value)


@lru_cache(maxsize=64)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _invalid_coi(reason: str, detail: str) -> CoiError:
    return CoiError(detail, code="invalid-coi", errors=[FieldError(_COI_POINTER, reason)])


def normalize_product_coi(
    raw: str, coi_format: Literal["isbt128", "manufacturer"], pattern: str | None
) -> str:
    """The stored normal form of ``raw`` under the product's CoI format, or ``CoiError("invalid-coi")``."""
    if coi_format == "isbt128":
        try:
            return normalize_coi(raw)
        except ValueError as exc:
            detail = f"coi is not a valid ISBT 128 Chain of Identity identifier: {exc}"
            raise _invalid_coi(str(exc), detail) from None
    if coi_format == "manufacturer":
        if pattern is None:
            raise ValueError("a product with the manufacturer CoI format must declare its CoI pattern")
        text = raw.strip()
        if not text:
            raise _invalid_coi("must not be empty", "coi is empty")
        if _compiled(pattern).fullmatch(text) is None:
            reason = f"does not match the product's CoI pattern {pattern!r}"
            raise _invalid_coi(reason, f"coi {reason}")
        return text
    raise ValueError(f"unknown CoI format {coi_format!r}")


def normalize_din_field(raw: str, pointer: str) -> str:
    """The stored normal form of an ISBT 128 DIN found at JSON pointer ``pointer``.

    Raises ``CoiError(code="invalid-din")`` naming ``pointer``.
    """
    try:
        return normalize_din(raw)
    except ValueError as exc:
        raise CoiError(
            f"{pointer} is not a valid ISBT 128 Donation Identification Number: {exc}",
            code="invalid-din",
            errors=[FieldError(pointer, str(exc))],
        ) from None
