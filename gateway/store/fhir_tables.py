"""The FHIR resource store's tables (SQLModel; migration ``0002_fhir_store``).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

__all__ = [
    "FhirResourceVersion",
    "FhirResourceCurrent",
    "FhirResourceAccess",
    "FhirSearchToken",
    "FhirSearchDate",
    "FhirClock",
]


def _str(length: int, **kw: Any) -> Any:
    return Field(sa_type=sa.String(length), **kw)


def _big(**kw: Any) -> Any:
    return Field(sa_type=sa.BigInteger(), **kw)


class FhirResourceVersion(SQLModel, table=True):
    __tablename__ = "fhir_resource_version"
    __table_args__ = (
        sa.Index("ix_fhir_version_type_updated", "resource_type", "last_updated_us", "resource_id",
                 "version_id"),
    )

    resource_type: str = _str(64, primary_key=True)
    resource_id: str = _str(64, primary_key=True)
    version_id: int = Field(primary_key=True, sa_type=sa.Integer(), sa_column_kwargs={"autoincrement": False})
    last_updated_us: int = _big()
    body: bytes = Field(sa_type=sa.LargeBinary())
    site_id: str | None = _str(64, default=None, nullable=True)
    manufacturer_id: str | None = _str(64, default=None, nullable=True)
    order_id: str | None = _str(64, default=None, nullable=True)


class FhirResourceCurrent(SQLModel, table=True):
    __tablename__ = "fhir_resource_current"
    __table_args__ = (
        sa.Index("ix_fhir_current_type_updated", "resource_type", "last_updated_us", "resource_id"),
    )

    resource_type: str = _str(64, primary_key=True)
    resource_id: str = _str(64, primary_key=True)
    version_id: int = Field(sa_type=sa.Integer())
    last_updated_us: int = _big()
    content_sha256: str = _str(64)
    body: bytes = Field(sa_type=sa.LargeBinary())


class FhirResourceAccess(SQLModel, table=True):
    __tablename__ = "fhir_resource_access"
    __table_args__ = (
        sa.Index("ix_fhir_access_tenant_updated", "resource_type", "tenant_kind", "tenant_id",
                 "last_updated_us", "resource_id"),
    )

    resource_type: str = _str(64, primary_key=True)
    resource_id: str = _str(64, primary_key=True)
    tenant_kind: str = _str(16, primary_key=True)  # "site" | "manufacturer"
    tenant_id: str = _str(64, primary_key=True)
    last_updated_us: int = _big()


class FhirSearchToken(SQLModel, table=True):
    __tablename__ = "fhir_search_token"
    __table_args__ = (sa.Index("ix_fhir_token_value", "resource_type", "param", "value", "system"),)

    resource_type: str = _str(64, primary_key=True)
    resource_id: str = _str(64, primary_key=True)
    param: str = _str(64, primary_key=True)
    system: str = _str(255, primary_key=True)  # "" when the value has no system
    value: str = _str(255, primary_key=True)


class FhirSearchDate(SQLModel, table=True):
    __tablename__ = "fhir_search_date"
    __table_args__ = (sa.Index("ix_fhir_date_start", "resource_type", "param", "start_us"),)

    resource_type: str = _str(64, primary_key=True)
    resource_id: str = _str(64, primary_key=True)
    param: str = _str(64, primary_key=True)
    start_us: int = _big(primary_key=True)
    end_us: int = _big(primary_key=True)


class FhirClock(SQLModel, table=True):
    __tablename__ = "fhir_clock"

    id: int = Field(primary_key=True, sa_type=sa.Integer(), sa_column_kwargs={"autoincrement": False})
    last_us: int = _big()
