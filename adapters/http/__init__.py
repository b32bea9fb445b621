"""HTTP transports: FHIR transaction push, signed webhooks, OAuth2 client credentials (httpx)."""
