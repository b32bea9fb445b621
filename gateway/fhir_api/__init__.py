"""The FHIR R4 API (``/fhir``) that EHR engines poll: read, vread, history and search over the
resource store (:mod:`gateway.store.fhir`).  ``router`` is included by the app factory.

``router`` is resolved on first access (PEP 562) so that :mod:`gateway.store.fhir` can import the
pure :mod:`gateway.store.search_params` without importing the routes (which import the store).
"""

from __future__ import annotations

from typing import Any

__all__ = ["router"]


def __getattr__(name: str) -> Any:
    if name == "router":
        from gateway.fhir_api.routes import router

        return router
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
