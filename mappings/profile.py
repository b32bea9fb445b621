"""Site mapping profile: the schema every site's YAML file is validated against.

The top-level shape is the contract other parts code against; the profile work owns this module
(loader with line numbers, content hash, extra validators).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mappings.profile_delivery import DeliverySettings
from mappings.profile_hl7v2 import Hl7v2Settings

__all__ = [
    "ProfileModel",
    "Identifier",
    "Coding",
    "PatientSettings",
    "OrderIdentifierSettings",
    "ProductMapping",
    "BusinessStatusSettings",
    "SiteProfile",
]


class ProfileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Identifier(ProfileModel):
    system: str
    value: str


class Coding(ProfileModel):
    system: str
    code: str
    display: str | None = None


class PatientSettings(ProfileModel):
    mrn_system: str
    demographics: Literal["full", "mrn_only"] = "mrn_only"


class OrderIdentifierSettings(ProfileModel):
    placer_system: str
    filler_system: str


class ProductMapping(ProfileModel):
    """Manufacturer product code -> the site's local orderable."""

    local_code: str
    display: str
    system: str


class BusinessStatusSettings(ProfileModel):
    """Overrides of our business-status codes (keyed by ``OrderStatus`` value)."""

    overrides: dict[str, Coding] = Field(default_factory=dict)


class SiteProfile(ProfileModel):
    site_id: str
    name: str
    timezone: str
    organization_identifiers: list[Identifier]
    patient: PatientSettings
    orders: OrderIdentifierSettings
    products: dict[str, ProductMapping]  # key: manufacturer product code (e.g. CART-CD19)
    measurement_codes: dict[str, Coding] = Field(default_factory=dict)  # key: MeasurementCode value
    business_status: BusinessStatusSettings = BusinessStatusSettings()
    hl7v2: Hl7v2Settings = Hl7v2Settings()
    delivery: DeliverySettings = DeliverySettings()
    # Content hash of the YAML file, set by the loader; recorded with every output.
    version: str = ""
