"""The top-level ``inbound`` section of a site profile: where the gateway listens for the site.

::

    inbound:
      mllp:
        host: 127.0.0.1          # address to bind
        port: 2575
        tls: false               # true: tls_cert_file and tls_key_file are required
        tls_cert_file: null
        tls_key_file: null
        allowed_peers: []        # CIDRs; empty: any peer
        enabled: true

What the listener reads from the site's messages (versions, codes, limits) is ``hl7v2.inbound``
(:mod:`mappings.profile.hl7v2_inbound`); this section is only the listening socket.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["InboundSettings", "MllpListen"]


class MllpListen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    host: Annotated[str, Field(min_length=1, max_length=255)]
    port: int = Field(ge=1, le=65535)
    tls: bool = False
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    allowed_peers: tuple[str, ...] = ()

    @field_validator("allowed_peers")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for peer in value:
            try:
                ipaddress.ip_network(peer, strict=False)
            except ValueError:
                raise ValueError(f"{peer!r} is not an IP address or CIDR network") from None
        return value

    @model_validator(mode="after")
    def _tls_files(self) -> MllpListen:
        if self.tls and not (self.tls_cert_file and self.tls_key_file):
            raise ValueError("tls: true needs tls_cert_file and tls_key_file")
        return self


class InboundSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    mllp: MllpListen | None = None
