"""Shared by the FHIR store/API/poller tests: hand-built valid R4 resources and seeding.

(Named ``test_*`` only so it sits with the files it serves; it holds no tests.)
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from gateway.store.db import write_session
from gateway.store.fhir import save_translation

__all__ = ["order_resources", "seed_order", "T0", "BS_SYSTEM"]

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
BS_SYSTEM = "https://cgt-gateway.example.org/fhir/CodeSystem/cgt-business-status"


def _id(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


def order_resources(order_id: str, *, site_id: str = "site-a", manufacturer_id: str = "acme-bio",
                    task_status: str = "requested", business_status: str = "order-placed",
                    modified: datetime = T0, npi: str = "1234567893") -> list[dict[str, Any]]:
    """The resources one order produces: Organizations/Practitioner shared by the orders of one site
    and manufacturer (keyed per site and manufacturer, as ``mappings.ids.party_system`` keys them),
    its own Patient, order, Task, product, Observation and Provenance.  All valid R4 (checked by the
    API tests)."""
    mfr = {"resourceType": "Organization", "id": _id("org", site_id, manufacturer_id, "manufacturer"),
           "name": manufacturer_id,
           "identifier": [{"system": "https://cgt-gateway.example.org/manufacturer",
                           "value": manufacturer_id}]}
    site = {"resourceType": "Organization", "id": _id("org", site_id, manufacturer_id, "site"),
            "name": site_id}
    practitioner = {"resourceType": "Practitioner", "id": _id("npi", site_id, manufacturer_id, npi),
                    "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": npi}]}
    patient = {"resourceType": "Patient", "id": _id("mrn", site_id, order_id),
               "identifier": [{"system": f"urn:{site_id}:mrn", "value": f"MRN-{order_id}"}]}
    sr_id, task_id, bdp_id = _id("sr", order_id), _id("task", order_id), _id("bdp", order_id)
    coi = f"COI{order_id}"
    service_request = {
        "resourceType": "ServiceRequest", "id": sr_id, "status": "active", "intent": "order",
        "identifier": [{"system": f"urn:{site_id}:placer", "value": order_id}],
        "code": {"text": "CAR-T"}, "subject": {"reference": f"Patient/{patient['id']}"},
        "requester": {"reference": f"Practitioner/{practitioner['id']}"},
    }
    task = {
        "resourceType": "Task", "id": task_id, "status": task_status, "intent": "order",
        "identifier": [{"system": f"urn:{manufacturer_id}:order", "value": order_id}],
        "groupIdentifier": {"system": "urn:isbt128:coi", "value": coi},
        "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
        "businessStatus": {"coding": [{"system": BS_SYSTEM, "code": business_status}]},
        "focus": {"reference": f"ServiceRequest/{sr_id}"},
        "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
        "for": {"reference": f"Patient/{patient['id']}"},
        "owner": {"reference": f"Organization/{mfr['id']}"},
        "requester": {"reference": f"Practitioner/{practitioner['id']}"},
        "lastModified": modified.isoformat(),
    }
    product = {"resourceType": "BiologicallyDerivedProduct", "id": bdp_id, "productCategory": "cells",
               "request": [{"reference": f"ServiceRequest/{sr_id}"}]}
    observation = {
        "resourceType": "Observation", "id": _id("obs", order_id), "status": "final",
        "basedOn": [{"reference": f"ServiceRequest/{sr_id}"}],
        "subject": {"reference": f"Patient/{patient['id']}"},
        "focus": [{"reference": f"BiologicallyDerivedProduct/{bdp_id}"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "26464-8"}]},
        "effectiveDateTime": (modified - timedelta(hours=1)).isoformat(),
        "valueQuantity": {"value": 5.1, "unit": "10*9/L", "system": "http://unitsofmeasure.org",
                          "code": "10*9/L"},
    }
    provenance = {
        "resourceType": "Provenance", "id": _id("prov", order_id),
        "target": [{"reference": f"BiologicallyDerivedProduct/{bdp_id}"}],
        "recorded": modified.isoformat(),
        "agent": [{"who": {"reference": f"Organization/{mfr['id']}"}}],
    }
    return [mfr, site, practitioner, patient, service_request, task, product, observation, provenance]


def seed_order(engine: Engine, order_id: str, *, now: datetime, site_id: str = "site-a",
               manufacturer_id: str = "acme-bio", **kwargs: Any) -> list[dict[str, Any]]:
    resources = order_resources(order_id, site_id=site_id, manufacturer_id=manufacturer_id, **kwargs)
    with write_session(engine) as session:
        return save_translation(session, site_id=site_id, manufacturer_id=manufacturer_id,
                                order_id=order_id, resources=resources, now=now)
