"""Persistence: engines and transactions (``db``), the spine's tables (``tables``), the FHIR
resource store (``fhir``), prepared SQL and the alembic migrations."""
