"""Discovery: the SMART configuration document and the OAuth security block of ``/fhir/metadata``."""

from __future__ import annotations

from typing import Any

from gateway.oauth.keys import ALGORITHMS
from gateway.oauth.scopes import scopes_supported

__all__ = ["OAUTH_URIS", "smart_configuration", "capability_security"]

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def smart_configuration(base_url: str) -> dict[str, Any]:
    """``/.well-known/smart-configuration`` for ``base_url`` (``public_base_url``): SMART Backend
    Services only (no authorize endpoint, so no PKCE methods are listed)."""
    return {
        "token_endpoint": base_url + "/oauth/token",
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": scopes_supported(),
        "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
    }


def capability_security(token_url: str) -> dict[str, Any]:
    """``CapabilityStatement.rest.security``: SMART-on-FHIR with the token endpoint (oauth-uris extension)."""
    return {
        "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url}]}],
        "service": [{"coding": [{"system": _SECURITY_SERVICE, "code": "SMART-on-FHIR",
                                 "display": "SMART-on-FHIR"}],
                     "text": "OAuth2 client credentials with a signed JWT assertion "
                             "(SMART Backend Services)"}],
        "description": ("Bearer token: an access token from the token endpoint (SMART Backend Services: "
                        "client_credentials with a private_key_jwt assertion signed RS384 or ES384; scopes "
                        "system/<Type>.rs, see /.well-known/smart-configuration), or a static token when the "
                        "server enables them. A site sees its own orders' resources, a manufacturer its own, "
                        "admin all; anything else is 404. A token without the interaction's scope gets 403."),
    }
