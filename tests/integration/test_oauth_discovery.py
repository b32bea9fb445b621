"""Discovery: /.well-known/smart-configuration (also under /fhir), the OAuth security block of
/fhir/metadata (valid R4B), and the OpenAPI bearer scheme behind /docs' Authorize button."""

from __future__ import annotations

from fhir.resources.R4B import get_fhir_model_class


def test_smart_configuration(client):
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        response = client.get(path)  # no token needed
        assert response.status_code == 200, path
        body = response.json()
        assert body["token_endpoint"] == "http://testserver/oauth/token"
        assert body["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
        assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
        assert body["grant_types_supported"] == ["client_credentials"]
        assert {"system/*.rs", "system/Task.rs", "system/Task.c", "orders.read", "orders.write",
                "admin"} <= set(body["scopes_supported"])
        assert "client-confidential-asymmetric" in body["capabilities"]


def test_capability_statement_names_the_token_endpoint(client):
    statement = client.get("/fhir/metadata").json()
    get_fhir_model_class("CapabilityStatement").model_validate(statement)
    security = statement["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    [oauth] = security["extension"]
    assert oauth["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert oauth["extension"] == [{"url": "token", "valueUri": "http://testserver/oauth/token"}]


def test_openapi_declares_the_bearer_scheme(client):
    spec = client.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearer"]["type"] == "http"
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/v1/orders"]["post"]["security"] == [{"bearer": []}]
    assert spec["paths"]["/fhir/{resource_type}"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/fhir/metadata"]["get"]
    token = spec["paths"]["/oauth/token"]["post"]
    assert "application/x-www-form-urlencoded" in token["requestBody"]["content"]
    assert "/.well-known/smart-configuration" in spec["paths"]
    assert client.get("/docs").status_code == 200
