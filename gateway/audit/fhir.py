"""Audit records as FHIR R4 AuditEvent resources in the IHE BALP shape (Basic Audit Log Patterns).

* ``type``: ``rest`` (RESTful operation, http://terminology.hl7.org/CodeSystem/audit-event-type) for
  API calls, DICOM ``110106`` Export for a delivery to a destination; ``subtype``: the REST
  interaction (http://hl7.org/fhir/restful-interaction: ``create``, ``read``, ``update``,
  ``search-type``) and our operation name (``urn:cgt-gateway:audit-operation``);
* ``action`` C/R/U/D/E; ``recorded``; ``outcome`` 0 (success), 4 (refused or to be retried), 8
  (failed for good) with ``outcomeDesc`` the failure's code;
* ``agent``: the client (DICOM ``110153`` Source Role ID, ``requestor``; ``who.identifier`` its client
  id, ``role`` its role, ``network.address`` its address) and this gateway (``110152`` Destination
  Role ID); for a delivery the gateway is the source and the destination (``site-a/mllp``) the
  destination agent;
* ``source``: this gateway (security-source-type 4, application server);
* ``entity``: each patient (``Patient/<id>``, entity type 1 Person, role 1 Patient), then each
  resource (FHIR ``Type/id`` as ``what.reference``; orders, events and outbox messages as
  ``what.identifier`` with system ``urn:cgt-gateway:<kind>``; entity type 2 System Object, role 4
  Domain Resource);
* an extension ``.../StructureDefinition/audit-chain`` with the record's ``seq``, ``prev`` and
  ``sha256``, so a reader can check the chain from the export alone.
"""

from __future__ import annotations

from typing import Any

from gateway.audit.records import AuditEntry
from gateway.store.search_params import format_instant

__all__ = ["audit_event", "CHAIN_EXTENSION", "BALP_PROFILES"]

CHAIN_EXTENSION = "https://cgt-gateway.example.org/fhir/StructureDefinition/audit-chain"
_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/"
BALP_PROFILES = {"create": "IHE.BasicAudit.Create", "read": "IHE.BasicAudit.Read",
                 "update": "IHE.BasicAudit.Update", "delete": "IHE.BasicAudit.Delete",
                 "search": "IHE.BasicAudit.Query"}
_ACTION = {"create": "C", "read": "R", "update": "U", "delete": "D", "search": "E", "execute": "E"}
_INTERACTION = {"create": "create", "read": "read", "update": "update", "delete": "delete",
                "search": "search-type"}
_SERIOUS = ("dead", "server-error")


def _coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    return {"system": system, "code": code, **({"display": display} if display else {})}


def _outcome(outcome: str) -> str:
    """0 success; 8 a delivery given up (``dead``) or a server failure; 4 anything else (refused, retry)."""
    if outcome == "success":
        return "0"
    return "8" if outcome in _SERIOUS else "4"


def _network(address: str) -> dict[str, Any]:
    is_ip = address.replace(".", "").isdigit() or ":" in address
    return {"address": address, "type": "2" if is_ip else "1"}  # 2: IP address, 1: machine name


def _what(ref: str) -> dict[str, Any]:
    kind, sep, value = ref.partition(":")
    if sep and "/" not in kind:  # order:acme-bio/ORD-1, event:..., outbox:12
        return {"identifier": {"system": f"urn:cgt-gateway:{kind}", "value": value}}
    return {"reference": ref}


def audit_event(seq: int, entry: AuditEntry, prev_sha256: str, sha256: str, *,
                gateway_name: str = "cgt-gateway") -> dict[str, Any]:
    """The AuditEvent of record ``seq`` (id ``str(seq)``)."""
    delivery = entry.action == "execute" and entry.operation.startswith("outbox.")
    client = {
        "type": {"coding": [_coding(_DCM, "110153", "Source Role ID")]},
        "role": [{"text": entry.role}],
        "who": {"identifier": {"system": "urn:cgt-gateway:client", "value": entry.client_id or "unknown"}},
        "requestor": True,
    }
    server: dict[str, Any] = {
        "type": {"coding": [_coding(_DCM, "110152", "Destination Role ID")]},
        "who": {"display": gateway_name},
        "requestor": False,
    }
    if delivery:
        server = {"type": {"coding": [_coding(_DCM, "110152", "Destination Role ID")]},
                  "who": {"identifier": {"system": "urn:cgt-gateway:destination", "value": entry.source}},
                  "requestor": False}
        if entry.source:
            server["network"] = _network(entry.source.split("/")[0])
    elif entry.source:
        client["network"] = _network(entry.source)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(seq),
        "meta": {"profile": [_BALP + BALP_PROFILES[entry.action]]}
        if entry.action in BALP_PROFILES else {},
        "extension": [{"url": CHAIN_EXTENSION, "extension": [
            ({"url": "seq", "valueInteger": seq} if seq <= 2**31 - 1
             else {"url": "seq", "valueString": str(seq)}),
            {"url": "prev", "valueString": prev_sha256},
            {"url": "sha256", "valueString": sha256},
        ]}],
        "type": (_coding(_DCM, "110106", "Export") if delivery
                 else _coding(_EVENT_TYPE, "rest", "Restful Operation")),
        "subtype": [
            *([_coding("http://hl7.org/fhir/restful-interaction", _INTERACTION[entry.action])]
              if entry.action in _INTERACTION else []),
            _coding("urn:cgt-gateway:audit-operation", entry.operation),
        ],
        "action": _ACTION.get(entry.action, "E"),
        "recorded": format_instant(entry.at_us),
        "outcome": _outcome(entry.outcome),
        "agent": [client, server],
        "source": {"observer": {"display": gateway_name},
                   "type": [_coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4",
                                    "Application Server")]},
    }
    if not event["meta"]:
        del event["meta"]
    if entry.outcome != "success":
        event["outcomeDesc"] = entry.outcome
    entities = [{"what": {"reference": p},
                 "type": _coding(_ENTITY_TYPE, "1", "Person"),
                 "role": _coding(_OBJECT_ROLE, "1", "Patient")}
                for p in entry.patients]
    entities += [{"what": _what(ref),
                  "type": _coding(_ENTITY_TYPE, "2", "System Object"),
                  "role": _coding(_OBJECT_ROLE, "4", "Domain Resource")}
                 for ref in entry.entities if ref not in entry.patients]
    if entities:
        event["entity"] = entities
    return event
