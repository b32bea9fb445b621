"""SMART Backend Services (issue 14): OAuth2 ``client_credentials`` with signed JWT client assertions.

``scopes`` (grammar, role limits), ``keys`` (clients' JWKS), ``clients`` (configured and registered),
``assertions`` (authenticating a client), ``tokens`` (opaque access tokens, stored hashed),
``discovery`` (SMART configuration, CapabilityStatement security) and ``routes`` (``POST /oauth/token``,
``GET /.well-known/smart-configuration``).  ``gateway.auth`` turns an access token into a principal.
"""
