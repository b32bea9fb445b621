"""The FHIR R4 API (``/fhir``) that EHR engines poll: read, vread, history and search over the
resource store (:mod:`gateway.fhir_store`).  ``router`` is included by the app factory."""

from gateway.fhir_api.routes import router

__all__ = ["router"]
