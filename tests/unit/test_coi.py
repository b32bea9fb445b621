"""Product CoI and DIN field checks: normal forms and CoiError with field pointers."""

from __future__ import annotations

import pytest

from gateway.errors import CoiError, FieldError
from gateway.intake.coi import normalize_din_field, normalize_product_coi

NOVA_PATTERN = r"NC-[0-9]{6}-[A-Z]{2}"


@pytest.mark.parametrize("raw", ["CHA999923A1B2C3", "&/CHA999923A1B2C3M", " CHA999923A1B2C3M "])
def test_isbt128_product_stores_the_isbt_normal_form(raw: str) -> None:
    assert normalize_product_coi(raw, "isbt128", None) == "CHA999923A1B2C3M"


def test_isbt128_product_ignores_any_pattern() -> None:
    assert normalize_product_coi("CHA999923A1B2C3", "isbt128", r"NEVER") == "CHA999923A1B2C3M"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("CHA999923A1B2C3X", "check character is 'X', expected 'M'"),
        ("CHO999923A1B2C3", "character 3 must be A–N, P–Z or 1–9, got 'O'"),
        ("NC1234567890ABC", "characters 1–2 must be 'CH', got 'NC'"),
    ],
)
def test_invalid_isbt128_coi_is_a_422_naming_coi(raw: str, reason: str) -> None:
    with pytest.raises(CoiError) as excinfo:
        normalize_product_coi(raw, "isbt128", None)
    error = excinfo.value
    assert (error.code, error.status) == ("invalid-coi", 422)
    assert error.errors == [FieldError("/coi", reason)]
    assert reason in error.detail and "ISBT 128" in error.detail


@pytest.mark.parametrize(
    ("raw", "normal"), [("NC-123456-AB", "NC-123456-AB"), ("  NC-123456-AB\t", "NC-123456-AB")]
)
def test_manufacturer_format_matches_the_declared_pattern_and_stores_the_stripped_value(
    raw: str, normal: str
) -> None:
    assert normalize_product_coi(raw, "manufacturer", NOVA_PATTERN) == normal


@pytest.mark.parametrize(
    "raw",
    [
        "NC-12345-AB",  # too short
        "NC-123456-AB-extra",  # a prefix match is not enough: the pattern must match in full
        "xNC-123456-AB",
        "nc-123456-ab",
        "NC-123456 -AB",
        "CHA999923A1B2C3M",  # an ISBT CoI is not this manufacturer's format
    ],
)
def test_manufacturer_format_refuses_anything_the_pattern_does_not_match_in_full(raw: str) -> None:
    with pytest.raises(CoiError) as excinfo:
        normalize_product_coi(raw, "manufacturer", NOVA_PATTERN)
    error = excinfo.value
    assert (error.code, error.status) == ("invalid-coi", 422)
    assert error.errors == [FieldError("/coi", f"does not match the product's CoI pattern {NOVA_PATTERN!r}")]


@pytest.mark.parametrize("raw", ["", "   "])
def test_manufacturer_format_refuses_an_empty_coi(raw: str) -> None:
    with pytest.raises(CoiError) as excinfo:
        normalize_product_coi(raw, "manufacturer", r".*")
    assert excinfo.value.errors == [FieldError("/coi", "must not be empty")]


def test_manufacturer_format_without_a_pattern_is_a_configuration_error_not_an_open_door() -> None:
    with pytest.raises(ValueError, match="must declare its CoI pattern"):
        normalize_product_coi("anything", "manufacturer", None)


def test_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown CoI format 'gs1'"):
        normalize_product_coi("anything", "gs1", None)  # type: ignore[arg-type]


def test_din_field_returns_the_normal_form() -> None:
    assert normalize_din_field("A999921123456", "/data/din") == "A9999211234563"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("A9999211234560", "check character is '0', expected '3'"),
        ("A99992112345", "must be 13 characters (facility id, 2-digit year, 6-digit sequence), "
                         "or 14 with the check character, without flag characters; got 12"),
    ],
)
def test_invalid_din_names_the_given_pointer(raw: str, reason: str) -> None:
    with pytest.raises(CoiError) as excinfo:
        normalize_din_field(raw, "/data/din")
    error = excinfo.value
    assert (error.code, error.status) == ("invalid-din", 422)
    assert error.errors == [FieldError("/data/din", reason)]
    assert error.detail.startswith("/data/din is not a valid ISBT 128 Donation Identification Number")
