"""The FHIR R4 API (``/fhir``) that EHR engines poll: read, vread, history and search over the
resource store (:mod:`gateway.store.fhir`).  ``router`` is included by the app factory.

``router`` is resolved on first access (PEP 562), so that importing one submodule (``outcome``,
``params``) does not import the routes and, through them, the store.
"""

from __future__ import annotations

from typing import Any

__all__ = ["router"]


def __getattr__(name: str) -> Any:
    if name == "router":
        from gateway.fhir_api.routes import router

        return router
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
