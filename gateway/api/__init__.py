"""The manufacturer API (``/v1``), admin views and health checks."""
