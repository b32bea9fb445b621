"""The manufacturer API (``/v1``): orders and events, read views, problem+json, admin (safety log,
outbox and alerts), site profile preview, health checks."""
