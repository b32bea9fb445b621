"""The CapabilityStatement, derived from the same tables the endpoints use, so it cannot over- or
under-promise: resource types and search parameters from :mod:`gateway.store.search_params`,
result parameters and paging limits from :mod:`gateway.fhir_api.params`, the types a site may create
(``POST /fhir/Task``, ``POST /fhir/Procedure``: :mod:`gateway.fhir_api.inbound`) from
:data:`CREATE_TYPES`, the scopes' own list."""

from __future__ import annotations

from typing import Any

from gateway.fhir_api.params import DEFAULT_COUNT, MAX_COUNT
from gateway.fhir_api.search_limits import SearchLimits
from gateway.oauth.discovery import capability_security
from gateway.oauth.scopes import CREATE_TYPES
from gateway.store.fhir_read import PUBLIC_TYPES
from gateway.store.search_params import INCLUDES, RESOURCE_TYPES, SEARCH_PARAMS
from mappings.fhir.subscription import capability_resources

__all__ = ["INTERACTIONS", "CREATE_TYPES", "FORMATS", "capability_statement", "interactions"]

INTERACTIONS = ("read", "vread", "history-instance", "history-type", "search-type")
_CREATE_DOCUMENTATION = {
    "Task": ("Create (site tokens only): a site's request Task (code abort, suspend, resume or change; focus "
             "the order's Task), answered 201 with the request Task as stored; its status follows the "
             "decision."),
    "Procedure": ("Create (site tokens only): the infusion done (status completed, basedOn the order's "
                  "ServiceRequest, performedDateTime), answered 201 with the Procedure as stored once the "
                  "infusion is recorded, 202 with an OperationOutcome naming the site request while the "
                  "manufacturer decides, 422 business-rule when the order's lifecycle refuses it."),
}


def interactions(rtype: str) -> tuple[str, ...]:
    """The type-level and instance-level interactions served for ``rtype``."""
    return INTERACTIONS + (("create",) if rtype in CREATE_TYPES else ())
FORMATS = ("json", "application/fhir+json")
_SOFTWARE_VERSION = "0.1.0"


def _resource(rtype: str) -> dict[str, Any]:
    access = ("readable by every authenticated client" if rtype in PUBLIC_TYPES else
              "visible to the site and manufacturer of the orders that reference it, and to admin")
    documentation = f"Read and search; {access}."
    if rtype in CREATE_TYPES:
        documentation += " " + _CREATE_DOCUMENTATION[rtype]
    else:
        documentation = f"Read-only; {access}."
    resource: dict[str, Any] = {
        "type": rtype,
        "documentation": documentation,
        "interaction": [{"code": code} for code in interactions(rtype)],
        "versioning": "versioned",
        "readHistory": True,
        "updateCreate": False,
        "conditionalRead": "full-support",
        "searchParam": [
            {"name": p.name, "definition": p.definition, "type": p.type, "documentation": p.documentation}
            for p in SEARCH_PARAMS[rtype].values()
        ],
    }
    if rtype in INCLUDES:
        resource["searchInclude"] = list(INCLUDES[rtype])
    return resource


def capability_statement(base_url: str, limits: SearchLimits = SearchLimits()) -> dict[str, Any]:
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-21",
        "publisher": "cgt-gateway",
        "kind": "instance",
        "software": {"name": "cgt-gateway", "version": _SOFTWARE_VERSION},
        "implementation": {"description": "CGT order gateway: FHIR R4 read/search API for EHR pollers; "
                                          "sites create request Tasks and Procedures",
                           "url": base_url},
        "fhirVersion": "4.0.1",
        "format": list(FORMATS),
        "rest": [{
            "mode": "server",
            "documentation": (
                f"Search: _count (default {DEFAULT_COUNT}, max {MAX_COUNT}), _sort=_lastUpdated or "
                "-_lastUpdated (default _lastUpdated), _summary=count, _total=accurate (also "
                "_totalMethod=count, as fhirpy's count() sends), _include as listed; HEAD answers every "
                "read like GET; "
                "GET [type]?... or POST [type]/_search (form parameters), with at most "
                f"{limits.max_params} parameters and {limits.max_values} values per parameter (repeats and "
                "comma-separated values together; beyond them 400 too-costly). Reference parameters take "
                "Type/id, id, or the absolute URL of a resource on this server. "
                "Paging by opaque keyset cursor in Bundle.link[next]: an ascending walk misses nothing and "
                "never repeats a version under concurrent writes (a resource updated mid-walk reappears "
                "later with its new version); "
                "meta.lastUpdated is monotonic in commit order, so _lastUpdated=gt<watermark> polling misses "
                "nothing. Dates take the prefixes eq, gt, ge, lt, le. Unknown parameters are refused (400) "
                "unless 'Prefer: handling=lenient'. History: _since, _count. JSON only (XML gets 406)."),
            # the OAuth token endpoint lives at the server's root; base_url is ``{public_base_url}/fhir``
            "security": capability_security(base_url.removesuffix("/fhir") + "/oauth/token"),
            # issue 16: Subscription (topics advertised) and Basic (the topics)
            "resource": [*(_resource(rtype) for rtype in RESOURCE_TYPES), *capability_resources()],
        }],
    }
