"""The ``delivery`` section of a site mapping profile: where the site's outputs go.

Each configured endpoint is one outbox *destination*, delivered FIFO and independently of the others.
Secrets never live in a profile: auth settings name environment variables that hold them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

__all__ = ["MllpEndpoint", "FhirPushAuth", "FhirPushEndpoint", "DeliverySettings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MllpEndpoint(_Section):
    """The site's interface engine, reached over MLLP."""

    enabled: bool = True
    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool = False  # server certificate and host name verified (system CAs, or tls_ca_file)
    tls_ca_file: str | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    read_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Enhanced mode: after the commit ACK (CA), also wait for the application ACK.
    wait_for_application_ack: bool = False


class FhirPushAuth(_Section):
    type: Literal["none", "bearer", "oauth2_client_credentials"] = "none"
    token_env: str | None = None  # bearer: name of the env var holding the token
    token_url: HttpUrl | None = None  # oauth2
    client_id: str | None = None
    client_secret_env: str | None = None
    scope: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> FhirPushAuth:
        if self.type == "bearer" and not self.token_env:
            raise ValueError("bearer auth needs token_env (the environment variable holding the token)")
        if self.type == "oauth2_client_credentials":
            required = ("token_url", "client_id", "client_secret_env")
            missing = [name for name in required if not getattr(self, name)]
            if missing:
                raise ValueError(f"oauth2_client_credentials auth needs {', '.join(missing)}")
        return self


class FhirPushEndpoint(_Section):
    """The site's FHIR server: each event's resources are pushed as one transaction Bundle."""

    enabled: bool = True
    base_url: HttpUrl
    auth: FhirPushAuth = FhirPushAuth()
    timeout_s: float = Field(default=30.0, gt=0, le=600)


class DeliverySettings(_Section):
    """No endpoint configured means nothing is queued for that channel."""

    mllp: MllpEndpoint | None = None
    fhir_push: FhirPushEndpoint | None = None
    max_attempts_before_alert: int = Field(default=10, ge=1)
