"""What one audit record holds, and how it is hashed (no I/O).

A record's hash is computed in two steps:

* ``content_sha256`` = SHA-256 (hex) of the record's canonical content: the UTF-8 bytes of the JSON
  array (no spaces, ``orjson`` output)
  ``[1, at_us, client_id, role, action, operation, [entities...], [patients...], outcome, source]``
  (``1`` is the format version; ``at_us`` the time in microseconds since 1970-01-01T00:00Z, UTC);
* ``sha256`` = SHA-256 (hex) of the ASCII text ``"<seq>:<prev_sha256>:<content_sha256>"``, where ``seq``
  is the record's place in the chain (1, 2, ...) and ``prev_sha256`` the previous record's ``sha256``
  (64 zeros for record 1).

So a record moved to another place no longer matches (``seq`` is hashed), and each record is chained
to all before it.  The second step is simple enough for PostgreSQL to compute in the appending
statement itself (``sha256(convert_to(...))``: one round trip per record, see :mod:`gateway.audit.chain`).
Entities and patients are lists of strings in the order given (duplicates removed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import orjson

__all__ = ["FORMAT_VERSION", "GENESIS_SHA256", "ACTIONS", "Action", "Actor", "AuditEntry", "canonical_bytes",
           "content_sha256", "chain_sha256", "record_sha256", "MAX_REFS", "MAX_REF_CHARS", "SYSTEM_ACTOR"]

FORMAT_VERSION = 1
GENESIS_SHA256 = "0" * 64
Action = Literal["create", "read", "update", "delete", "search", "execute"]
ACTIONS: tuple[str, ...] = ("create", "read", "update", "delete", "search", "execute")
MAX_REFS = 1000  # entities (and patients) one record names at most: bounded rows per call
MAX_REF_CHARS = 200  # one reference's length (the audit_ref column)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the client id (``Principal.client_id``), its role (``manufacturer:acme-bio``,
    ``site:site-a``, ``admin``, ``system``) and where the call came from (client IP address)."""

    client_id: str
    role: str
    source: str = ""


SYSTEM_ACTOR = Actor("cgt-gateway", "system", "")


def _unique(values: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v[:MAX_REF_CHARS] for v in values if v))[:MAX_REFS]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One call that read or wrote patient data.  ``entities``: references of what was touched
    (``Task/<id>`` for FHIR resources, ``order:<manufacturer>/<order_id>``,
    ``event:<manufacturer>/<event_id>``, ``outbox:<message id>``); ``patients``: ``Patient/<id>``
    only (never a name or an MRN);
    ``outcome``: ``success`` or the failure's code; ``source``: the client's address, or for a
    delivery the destination (``site-a/mllp``)."""

    at_us: int
    client_id: str
    role: str
    action: str
    operation: str
    entities: tuple[str, ...] = field(default=())
    patients: tuple[str, ...] = field(default=())
    outcome: str = "success"
    source: str = ""

    @classmethod
    def of(cls, actor: Actor, at_us: int, action: str, operation: str, *,
           entities: tuple[str, ...] | list[str] = (), patients: tuple[str, ...] | list[str] = (),
           outcome: str = "success",
           source: str | None = None) -> AuditEntry:
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        return cls(at_us, actor.client_id[:128], actor.role[:140], action, operation[:64],
                   _unique(entities), _unique(patients), outcome[:64],
                   (actor.source if source is None else source)[:256])


def canonical_bytes(entry: AuditEntry) -> bytes:
    """The canonical serialization of a record's content (see the module docstring)."""
    return orjson.dumps([FORMAT_VERSION, entry.at_us, entry.client_id, entry.role, entry.action,
                         entry.operation, list(entry.entities), list(entry.patients), entry.outcome,
                         entry.source])


def content_sha256(entry: AuditEntry) -> str:
    return hashlib.sha256(canonical_bytes(entry)).hexdigest()


def chain_sha256(seq: int, prev_sha256: str, content: str) -> str:
    """The record's hash from its place, the previous record's hash and its content hash."""
    return hashlib.sha256(f"{seq}:{prev_sha256}:{content}".encode("ascii")).hexdigest()


def record_sha256(seq: int, entry: AuditEntry, prev_sha256: str) -> str:
    return chain_sha256(seq, prev_sha256, content_sha256(entry))
