"""``POST /v1/sites/{site_id}/preview``: what a site's EHR would receive, without storing anything.

The site's own token or an admin may call it.  The body holds an order, its events and, to try a
draft before it goes live, optionally the text of a candidate profile (``profile_yaml``), which is
validated exactly as at start-up (same ``profile_*`` and ``template_*`` bounds): an invalid draft is
a 422 naming every ``file:line: field: reason``.  The handler is a plain ``def``: FastAPI runs it in
its threadpool, never on the event loop, and every template it renders is bounded in steps and time.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from gateway.api.problem import problem_responses
from gateway.auth import Principal, current_principal, needs
from gateway.errors import FieldError, Forbidden, NotFound, ValidationFailed
from gateway.intake.replay import preview_order
from gateway.profile_limits import profile_limits
from mappings.domain import StrictModel
from mappings.events import EventIn
from mappings.orders import OrderIn
from mappings.profile.loader import ProfileInvalid, load_profile_text

__all__ = ["router", "PreviewRequest"]

router = APIRouter(prefix="/v1/sites", tags=["sites"], dependencies=[needs("orders.read", "admin")],
                   responses=problem_responses(400, 401, 403, 404, 413, 415, 422))


class PreviewRequest(StrictModel):
    order: OrderIn
    events: Annotated[list[EventIn], Field(max_length=200)] = []
    profile_yaml: Annotated[str, Field(max_length=1_000_000)] | None = None


@router.post("/{site_id}/preview", summary="Preview the FHIR Bundle and HL7v2 messages for each event")
def preview(request: Request, site_id: str, body: PreviewRequest,
            principal: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
    context = request.app.state.context
    if not (principal.is_admin or (principal.role == "site" and principal.subject == site_id)):
        raise Forbidden("Only the site's own token or an admin may preview a site's mapping.")
    profile = context.profiles.get(site_id)
    if profile is None:
        raise NotFound(f"No site {site_id}.")
    if body.profile_yaml is not None:
        try:
            profile = load_profile_text(body.profile_yaml, f"{site_id}.yaml",
                                        profile_limits(context.settings))
        except ProfileInvalid as exc:
            error = ValidationFailed("The draft profile is not valid.", code="invalid-profile",
                                     errors=[FieldError("/profile_yaml", p) for p in exc.listed])
            error.errors_total = exc.count  # errors_truncated counts the problems not listed
            raise error from None
        if profile.site_id != site_id:
            raise ValidationFailed("The draft profile is for another site.", code="invalid-profile",
                                   errors=[FieldError("/profile_yaml", f"site_id is {profile.site_id!r}")])
    if body.order.site_id != site_id:
        raise ValidationFailed("The order is for another site.",
                               errors=[FieldError("/order/site_id", f"must be {site_id!r}")])
    steps = preview_order(context.settings, profile, body.order, body.events, context.terminology,
                          now=context.now())
    return {"site_id": site_id, "profile_version": profile.version, "steps": [s.to_json() for s in steps]}
