"""The FHIR R4 API (``/fhir``) that EHR engines poll. The FHIR API work owns this package."""

from fastapi import APIRouter

__all__ = ["router"]

router = APIRouter(prefix="/fhir")
