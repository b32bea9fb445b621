"""Site mapping profile: the schema every site's YAML file is validated against.

A hospital interface team states once how CGT orders appear in its EHR: identifier systems, local
order codes, business statuses, how much demographic data.  ``load_profile`` (in
:mod:`mappings.profile.loader`) reads the YAML, validates it against
:class:`SiteProfile`, reports every problem as ``file:line: field.path: reason`` and stamps the
content hash on :attr:`SiteProfile.version`.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from mappings.domain import OrderStatus
from mappings.er7.charsets import charset_label, encodable, python_codec
from mappings.profile.delivery import DeliverySettings
from mappings.profile.hl7v2 import Hl7v2Settings
from mappings.profile.inbound import InboundSettings
from mappings.profile.subscriptions import SubscriptionSettings
from mappings.profile.templates import check_template
from terminology import load_terminology

__all__ = [
    "ProfileModel",
    "SystemUri",
    "Identifier",
    "Coding",
    "PatientSettings",
    "OrderIdentifierSettings",
    "ProductMapping",
    "StatusCoding",
    "BusinessStatusSettings",
    "SiteProfile",
    "check_system_uri",
]

_HTTP_URI = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]+)?(/[^\s]*)?$")
_OID_URI = re.compile(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")
_UUID_URI = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# Same shape as the product codes manufacturers send (mappings.domain.OrderIn.product_code).
_PRODUCT_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]*$")
_SITE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def check_system_uri(value: str) -> str:
    """An identifier/code system must be an absolute URI: ``http(s)://``, ``urn:oid:`` or ``urn:uuid:``."""
    if _HTTP_URI.match(value) or _OID_URI.match(value) or _UUID_URI.match(value):
        return value
    raise PydanticCustomError(
        "system_uri",
        "'{value}' is not an absolute URI (expected http(s)://..., urn:oid:<digits.dots> or urn:uuid:<uuid>)",
        {"value": value},
    )


SystemUri = Annotated[str, AfterValidator(check_system_uri)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^\S(.*\S)?$")]


def _check_product_code(value: str) -> str:
    if not _PRODUCT_CODE.match(value) or len(value) > 64:
        raise PydanticCustomError(
            "product_code",
            "'{value}' does not look like a manufacturer product code (letters, digits, '.', '_', ':', '-')",
            {"value": value},
        )
    return value


def _check_measurement_code(value: str) -> str:
    known = load_terminology().measurement_codes()
    if value not in known:
        raise PydanticCustomError(
            "unknown_code",
            "unknown measurement code '{value}'; expected one of: {known}",
            {"value": value, "known": ", ".join(known)},
        )
    return value


def _check_business_status(value: str) -> str:
    known = [s.value for s in OrderStatus]
    if value not in known:
        raise PydanticCustomError(
            "unknown_code",
            "unknown business status '{value}'; expected one of: {known}",
            {"value": value, "known": ", ".join(known)},
        )
    return value


ProductCode = Annotated[str, AfterValidator(_check_product_code)]
MeasurementKey = Annotated[str, AfterValidator(_check_measurement_code)]
BusinessStatusKey = Annotated[str, AfterValidator(_check_business_status)]


class ProfileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Identifier(ProfileModel):
    system: SystemUri
    value: Code


class Coding(ProfileModel):
    system: SystemUri
    code: Code
    display: Text | None = None


class PatientSettings(ProfileModel):
    mrn_system: SystemUri
    # full: the manufacturer's demographics (name, birth date, sex) are sent; mrn_only: only the MRN.
    demographics: Literal["full", "mrn_only"] = "mrn_only"


class OrderIdentifierSettings(ProfileModel):
    placer_system: SystemUri  # ServiceRequest.identifier (PLAC), ORC-2
    filler_system: SystemUri  # ServiceRequest/Task identifier (FILL), ORC-3
    # The site's own order number (told by HL7v2 NA): ServiceRequest.identifier (FILL) in this system;
    # default: the gateway's https://cgt-gateway.example.org/fhir/sid/site/<site_id>/order-number.
    site_order_system: SystemUri | None = None

    @model_validator(mode="after")
    def _distinct(self) -> OrderIdentifierSettings:
        systems = [self.placer_system, self.filler_system, self.site_order_system]
        if self.placer_system == self.filler_system:
            raise PydanticCustomError("same_system", "placer_system and filler_system must differ")
        if self.site_order_system is not None and len(set(systems)) < 3:
            raise PydanticCustomError(
                "same_system", "site_order_system must differ from placer_system and filler_system")
        return self


class ProductMapping(ProfileModel):
    """Manufacturer product code -> the site's local orderable."""

    local_code: Code
    display: Text
    system: SystemUri
    manufacturer: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")] | None = None  # e.g. acme-bio


class StatusCoding(Coding):
    """A site's code for one of our business statuses: the display is required."""

    display: Text


class BusinessStatusSettings(ProfileModel):
    """Overrides of our business-status codes (keyed by ``OrderStatus`` value)."""

    overrides: dict[BusinessStatusKey, StatusCoding] = Field(default_factory=dict)


NotificationChannel = Literal["webhook", "hl7v2", "subscription"]


class NotificationSettings(ProfileModel):
    """How the site is told of alerts on its orders (issue 16, docs/alerts.md): ``webhook`` (the
    manufacturer's webhook carries ``alert.raised``), ``hl7v2`` (not rendered yet: documented),
    ``subscription`` (the alert's FHIR Flag, for the ``order-alert`` subscription topic)."""

    release_failed: Annotated[list[NotificationChannel], Field(max_length=3)] = ["webhook", "subscription"]


class SiteProfile(ProfileModel):
    site_id: Annotated[str, Field(max_length=64)]
    name: Text
    timezone: str  # IANA name, e.g. America/New_York; HL7v2 timestamps use it
    organization_identifiers: Annotated[list[Identifier], Field(min_length=1)]
    patient: PatientSettings
    orders: OrderIdentifierSettings
    # key: the manufacturer product code (e.g. CART-CD19)
    products: Annotated[dict[ProductCode, ProductMapping], Field(min_length=1)]
    measurement_codes: dict[MeasurementKey, Coding] = Field(default_factory=dict)  # key: our measurement code
    business_status: BusinessStatusSettings = BusinessStatusSettings()
    hl7v2: Hl7v2Settings = Hl7v2Settings()
    delivery: DeliverySettings = DeliverySettings()
    inbound: InboundSettings = InboundSettings()  # where the gateway listens for the site
    notifications: NotificationSettings = NotificationSettings()  # issue 16: alert delivery preferences
    subscriptions: SubscriptionSettings = SubscriptionSettings()  # FHIR Subscriptions' allowed endpoints
    # Content hash of the YAML file, set by the loader; recorded with every output.
    version: str = ""

    @field_validator("site_id")
    @classmethod
    def _check_site_id(cls, value: str) -> str:
        if not _SITE_ID.match(value):
            raise PydanticCustomError(
                "site_id", "'{value}' is not a site id (lowercase letters, digits and '-')", {"value": value})
        return value

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise PydanticCustomError(
                "timezone", "unknown timezone '{value}' (expected an IANA name like Europe/Berlin)",
                {"value": value}) from None
        return value

    @field_validator("hl7v2")
    @classmethod
    def _codes_fit_the_hl7v2_charset(cls, value: Hl7v2Settings, info: ValidationInfo) -> Hl7v2Settings:
        """Codes sent in HL7v2 (OBR-4, OBX-3, ORC-16) are never transliterated: they must fit MSH-18."""
        if not value.enabled:
            return value
        codec = python_codec(value.charset)
        codes: list[tuple[str, str]] = []
        for key, product in (info.data.get("products") or {}).items():
            codes.append((f"products.{key}.local_code", product.local_code))
        for key, coding in (info.data.get("measurement_codes") or {}).items():
            codes.append((f"measurement_codes.{key}.code", coding.code))
        business = info.data.get("business_status")
        for key, coding in (business.overrides.items() if business is not None else ()):
            codes.append((f"business_status.overrides.{key}.code", coding.code))
        for path, code in codes:
            if not encodable(code, codec):
                raise PydanticCustomError(
                    "charset", "{path} has characters outside {charset}; codes are never transliterated",
                    {"path": path, "charset": charset_label(value.charset)})
        return value

    @field_validator("hl7v2")
    @classmethod
    def _overrides_see_only_allowed_demographics(cls, value: Hl7v2Settings,
                                                 info: ValidationInfo) -> Hl7v2Settings:
        """Without the loader's context (direct validation), check the overrides against demographics."""
        if isinstance(info.context, dict) and "demographics" in info.context:
            return value  # the loader checked each override with the profile's demographics
        patient = info.data.get("patient")
        if isinstance(patient, PatientSettings) and patient.demographics != "full":
            for path, source in value.overrides.items():
                try:
                    check_template(source, demographics=patient.demographics)
                except ValueError as exc:
                    raise ValueError(f"overrides.{path}: {exc}") from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The site's timezone as a ``ZoneInfo``."""
        return ZoneInfo(self.timezone)
