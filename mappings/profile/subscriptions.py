"""The ``subscriptions`` section of a site profile: where the site's FHIR Subscriptions may notify.

::

    subscriptions:
      allowed_endpoints:              # a Subscription's channel.endpoint must start with one of these
        - https://ehr.site-a.example.org/fhir-hooks/
        - http://127.0.0.1:           # demo only: any port on the loopback

No prefix: the site cannot create Subscriptions.  A prefix is an absolute ``http(s)://`` URL start
with a host and no user info; when it ends inside the host or port, :func:`endpoint_allowed` still
needs the endpoint's host (or port) to end where the prefix does, so ``https://ehr.example.org``
never admits ``https://ehr.example.org.evil.test``.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SubscriptionSettings", "endpoint_allowed"]

_PREFIX = re.compile(r"^https?://[A-Za-z0-9.\-\[\]]+(:[0-9]*)?(/[A-Za-z0-9._~!$&'()*+,;=:/%-]*)?$")


class SubscriptionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_endpoints: Annotated[tuple[str, ...], Field(max_length=50)] = ()

    @field_validator("allowed_endpoints")
    @classmethod
    def _prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for prefix in value:
            if len(prefix) > 500 or not _PREFIX.match(prefix):
                raise ValueError(
                    f"{prefix[:100]!r} is not an http(s) URL prefix with a host (and no user "
                    "info, query or fragment)"
                )
        return value


def endpoint_allowed(endpoint: str, prefixes: tuple[str, ...]) -> bool:
    """Whether ``endpoint`` starts with one of ``prefixes`` at a boundary of its authority."""
    for prefix in prefixes:
        if not endpoint.startswith(prefix):
            continue
        authority_ends = "/" in prefix.split("//", 1)[1]
        rest = endpoint[len(prefix) :]
        if authority_ends or prefix.endswith(":") or not rest or rest[0] in "/:?#":
            if not prefix.endswith(":") or authority_ends or rest[:1].isdigit():
                return True
    return False
