"""One error tree with stable machine codes.

Every failure the gateway reports derives from :class:`GatewayError`.  Each protocol renders it in
its own form through one function: problem+json (``gateway.api.problem``), OperationOutcome
(``gateway.fhir_api``), an AE/AR ACK with ERR (``mappings.hl7v2``).  Third-party exceptions are
translated at the adapter boundary and never leak.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "FieldError",
    "GatewayError",
    "ValidationFailed",
    "AuthError",
    "Forbidden",
    "NotFound",
    "Conflict",
    "LifecycleError",
    "CoiError",
    "MappingError",
    "TerminologyError",
    "DeliveryError",
    "RetryableDeliveryError",
    "PermanentDeliveryError",
    "DEFAULT_MAX_ERRORS",
    "validation_errors",
]


@dataclass(frozen=True)
class FieldError:
    """One bad field: a JSON pointer (``/patient/birth_date``) and why it is bad."""

    pointer: str
    reason: str
    code: str = "invalid"


class GatewayError(Exception):
    """Root of the tree. ``code`` is stable and machine-readable; ``status`` is the HTTP status."""

    code: str = "gateway-error"
    status: int = 500
    title: str = "Gateway error"
    fhir_issue_code: str = "exception"  # OperationOutcome.issue.code
    errors_total: int = 0  # see __init__ (a class default for subclasses that set ``errors`` themselves)

    def __init__(self, detail: str, *, code: str | None = None, errors: list[FieldError] | None = None,
                 status: int | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.errors: list[FieldError] = list(errors or [])
        # how many errors there were, when ``errors`` holds only the first ones (bounded error lists)
        self.errors_total = len(self.errors)


class ValidationFailed(GatewayError):
    code = "validation-failed"
    status = 422
    title = "Request failed validation"
    fhir_issue_code = "invalid"


class AuthError(GatewayError):
    code = "unauthenticated"
    status = 401
    title = "Missing or invalid bearer token"
    fhir_issue_code = "login"


class Forbidden(GatewayError):
    code = "forbidden"
    status = 403
    title = "This token's role may not do that"
    fhir_issue_code = "forbidden"


class NotFound(GatewayError):
    code = "not-found"
    status = 404
    title = "Not found"
    fhir_issue_code = "not-found"


class Conflict(GatewayError):
    code = "conflict"
    status = 409
    title = "Conflicts with what is already stored"
    fhir_issue_code = "conflict"


class LifecycleError(GatewayError):
    """An event the order's lifecycle refuses (out of order, terminal state, shelf life)."""

    code = "invalid-transition"
    status = 409
    title = "The order's lifecycle refuses this event"
    fhir_issue_code = "business-rule"


class CoiError(GatewayError):
    """Anything that could break the Chain of Identity."""

    code = "coi-mismatch"
    status = 422
    title = "Chain of Identity check failed"
    fhir_issue_code = "business-rule"


class MappingError(GatewayError):
    code = "mapping-error"
    status = 422
    title = "The site mapping profile cannot map this"
    fhir_issue_code = "processing"


class TerminologyError(MappingError):
    code = "unmapped-code"
    title = "No code mapping found"
    fhir_issue_code = "code-invalid"


class DeliveryError(GatewayError):
    code = "delivery-failed"
    status = 502
    title = "Delivery failed"
    fhir_issue_code = "transient"
    retryable: bool = False


class RetryableDeliveryError(DeliveryError):
    code = "delivery-retryable"
    retryable = True


class PermanentDeliveryError(DeliveryError):
    code = "delivery-permanent"
    fhir_issue_code = "exception"
    retryable = False


DEFAULT_MAX_ERRORS = 100  # the setting max_error_entries


def _pointer(loc: tuple[Any, ...] | list[Any]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in loc)


def validation_errors(errors: list[Any], prefix: str = "",
                      max_errors: int | None = None) -> list[FieldError]:
    """Pydantic errors -> FieldErrors with JSON pointers (``prefix`` + the error's location); only the
    first ``max_errors`` are converted when given."""
    found: list[FieldError] = []
    for err in errors if max_errors is None else errors[:max_errors]:
        reason = (
            "extra field not permitted" if err.get("type") == "extra_forbidden" else err.get("msg", "invalid")
        )
        if reason.startswith("Value error, "):
            reason = reason[len("Value error, ") :]
        found.append(FieldError(prefix + _pointer(err.get("loc", ())), reason, err.get("type", "invalid")))
    return found
