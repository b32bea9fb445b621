"""The SiteProfile schema's own validators (identifier systems, codes, keys, timezone)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from mappings.profile.schema import SiteProfile, check_system_uri


def _profile(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "site_id": "site-x",
        "name": "Site X",
        "timezone": "Europe/Berlin",
        "organization_identifiers": [{"system": "https://x.example.org/sid/org", "value": "X"}],
        "patient": {"mrn_system": "https://x.example.org/sid/mrn"},
        "orders": {"placer_system": "urn:oid:2.16.840.1.113883.19.1",
                   "filler_system": "urn:oid:2.16.840.1.113883.19.2"},
        "products": {"CART-CD19": {"local_code": "X1", "display": "CAR-T", "system": "https://x.example.org/cs/o"}},
    }
    data.update(changes)
    return data


def _errors(**changes: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        SiteProfile.model_validate(_profile(**changes))
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in caught.value.errors()]


@pytest.mark.parametrize("system", [
    "http://hl7.org/fhir/sid/us-npi",
    "https://site-a.example.org/fhir/sid/mrn",
    "https://host:8443/path?x=1",
    "urn:oid:2.16.840.1.113883.19.5",
    "urn:oid:1.0.3",
    "urn:uuid:53fefa32-fcbb-4ff8-8a92-55ee120877b7",
])
def test_absolute_uri_systems_pass(system: str) -> None:
    assert check_system_uri(system) == system


@pytest.mark.parametrize("system", [
    "", "MRN", "site-a/mrn", "ftp://x.org/a", "https://", "https://x y.org", "http://x.org/a b",
    "urn:oid:", "urn:oid:3.1", "urn:oid:1.02.3", "urn:oid:1.2.x", "urn:oid:1", "urn:uuid:not-a-uuid",
    "urn:uuid:53FEFA32-FCBB-4FF8-8A92-55EE120877B7", "oid:1.2.3",
])
def test_other_systems_fail(system: str) -> None:
    errors = _errors(patient={"mrn_system": system})
    assert errors == [("patient.mrn_system", f"'{system}' is not an absolute URI "
                       "(expected http(s)://..., urn:oid:<digits.dots> or urn:uuid:<uuid>)")]


def test_minimal_profile_defaults() -> None:
    profile = SiteProfile.model_validate(_profile())
    assert profile.patient.demographics == "mrn_only"  # least PHI unless the site asks for more
    assert profile.hl7v2.enabled is False
    assert profile.version == ""
    assert profile.zone == ZoneInfo("Europe/Berlin")


def test_profile_is_frozen_and_refuses_unknown_fields() -> None:
    profile = SiteProfile.model_validate(_profile())
    with pytest.raises(ValidationError):
        profile.name = "other"  # type: ignore[misc]
    assert _errors(colour="blue") == [("colour", "Extra inputs are not permitted")]


@pytest.mark.parametrize("key", ["CART CD19", "-CART", "CART/CD19", "", "x" * 65])
def test_product_keys_that_look_wrong(key: str) -> None:
    product = {"local_code": "X1", "display": "CAR-T", "system": "https://x.example.org/cs/o"}
    errors = _errors(products={key: product})
    assert len(errors) == 1
    assert errors[0][1].endswith(
        "does not look like a manufacturer product code (letters, digits, '.', '_', ':', '-')")


def test_products_may_not_be_empty() -> None:
    assert _errors(products={}) == [
        ("products", "Dictionary should have at least 1 item after validation, not 0")]


def test_product_manufacturer_is_an_id() -> None:
    product = {"local_code": "X1", "display": "CAR-T", "system": "https://x.example.org/cs/o",
               "manufacturer": "Acme Bio"}
    assert _errors(products={"CART-CD19": product})[0][0] == "products.CART-CD19.manufacturer"


def test_local_codes_may_not_have_surrounding_spaces() -> None:
    product = {"local_code": " X1", "display": "CAR-T", "system": "https://x.example.org/cs/o"}
    assert _errors(products={"CART-CD19": product})[0][0] == "products.CART-CD19.local_code"


def test_placer_and_filler_systems_must_differ() -> None:
    same = {"placer_system": "urn:oid:1.2.3", "filler_system": "urn:oid:1.2.3"}
    assert _errors(orders=same) == [("orders", "placer_system and filler_system must differ")]


def test_measurement_override_keys_are_our_codes() -> None:
    coding = {"system": "urn:oid:1.2.3", "code": "L1", "display": "CD3"}
    profile = SiteProfile.model_validate(_profile(measurement_codes={"cd3_count": coding}))
    assert profile.measurement_codes["cd3_count"].code == "L1"
    errors = _errors(measurement_codes={"CD3": coding})
    assert errors[0][0] == "measurement_codes.CD3.[key]"
    assert errors[0][1].startswith("unknown measurement code 'CD3'; expected one of: tnc_count, cd3_count")


def test_measurement_override_system_is_checked() -> None:
    errors = _errors(measurement_codes={"cd3_count": {"system": "LAB", "code": "L1"}})
    assert errors[0][0] == "measurement_codes.cd3_count.system"


def test_business_status_overrides_need_known_status_and_display() -> None:
    coding = {"system": "urn:oid:1.2.3", "code": "S1", "display": "Shipped"}
    ok = SiteProfile.model_validate(_profile(business_status={"overrides": {"shipped": coding}}))
    assert ok.business_status.overrides["shipped"].display == "Shipped"
    errors = _errors(business_status={"overrides": {
        "dispatched": coding,
        "received": {"system": "urn:oid:1.2.3", "code": "S2"},
    }})
    assert errors[0][0] == "business_status.overrides.dispatched.[key]"
    assert errors[0][1].startswith("unknown business status 'dispatched'; expected one of: placed, confirmed")
    assert errors[1] == ("business_status.overrides.received.display", "Field required")


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd", "America", "EST5EDT_"])
def test_timezone_must_be_an_iana_name(tz: str) -> None:
    errors = _errors(timezone=tz)
    assert errors == [("timezone", f"unknown timezone '{tz}' (expected an IANA name like Europe/Berlin)")]


@pytest.mark.parametrize("site_id", ["Site-A", "site_a", "-site", "site a"])
def test_site_id_shape(site_id: str) -> None:
    assert _errors(site_id=site_id) == [
        ("site_id", f"'{site_id}' is not a site id (lowercase letters, digits and '-')")]
