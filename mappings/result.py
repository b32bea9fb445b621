"""What translation returns: FHIR resources, HL7v2 messages and mapping issues (plain data)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from terminology.issues import MappingIssue  # defined below translation: terminology reports issues too

__all__ = ["Hl7Message", "MappingIssue", "Translation"]


@dataclass(frozen=True)
class Hl7Message:
    """One rendered HL7v2 message, ready for the outbox.

    ``er7`` is the whole message, segments separated (and ended) by ``\\r``; ``control_id`` is MSH-10
    (deterministic, unique, at most 20 characters); ``message_type`` is MSH-9 (``OML^O21``).
    ``refused`` says why the message must not be sent (e.g. text outside the site's character set
    with ``charset_fallback: refuse``; field paths only, never values); the outbox records it as a
    dead letter with an alert instead of sending it.
    """

    message_type: str
    control_id: str
    er7: str
    version: str
    refused: str | None = None


@dataclass(frozen=True)
class Translation:
    """The new versions of every resource an event touches, and the site's HL7v2 messages.

    ``resources`` are FHIR R4 JSON dicts with ``resourceType`` and a deterministic ``id`` and no
    ``meta.versionId``/``meta.lastUpdated`` (the store assigns those).  The store keeps a new
    version only when a resource's content differs from its latest stored version.
    """

    resources: tuple[dict[str, Any], ...]
    messages: tuple[Hl7Message, ...] = ()
    issues: tuple[MappingIssue, ...] = ()
    profile_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
