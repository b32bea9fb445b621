"""Moved to :mod:`gateway.prepared_sql` (reads and writes on the DB-API cursor); kept importable."""

from __future__ import annotations

from gateway.prepared_sql import compiled_for, fetch_all

__all__ = ["fetch_all", "compiled_for"]
