"""Read a request Task or a Procedure a site POSTs into the values of a site request, or field errors.

Pure: no I/O, no clock.  The route (:mod:`gateway.fhir_api.inbound`) resolves the reference to the
order, checks the site, and hands the values to the site-request service.  What we accept (every other
element is refused, naming it):

**Task** (HL7 Clinical Order Workflows: the placer asks by a new Task)

==================  ======================================================================================
element             rule
==================  ======================================================================================
``status``          ``requested``
``intent``          ``order``
``code``            one coding of ``http://hl7.org/fhir/CodeSystem/task-code``: ``abort`` (cancel),
                    ``suspend`` (hold), ``resume`` (release the hold), ``change`` (new dates)
``focus``           ``Task/<id>``: the order's Task as the gateway serves it (or its absolute URL here)
``input``           by ``type.coding`` in ``https://cgt-gateway.example.org/fhir/CodeSystem/cgt-task-input``:
                    ``requested-start`` / ``requested-end`` (``valueDateTime`` with a time and an offset;
                    ``change`` only, ``requested-start`` required for it), ``requested-appointment``
                    (``valueString``/``valueCode`` ``apheresis`` or ``infusion``; ``change`` only; absent:
                    the apheresis date before collection, the infusion date after), ``site-reason``
                    (``valueString``).  Each at most once.
``reasonCode``      its ``text`` (else its first coding's ``display``) is the reason
``note``            each ``text`` is added to the reason (line breaks between)
ignored             ``id`` (the server assigns it), ``meta``, ``text``, ``identifier``, ``priority``,
                    ``description``, ``for``, ``authoredOn``, ``requester``
==================  ======================================================================================

``executionPeriod`` is not taken for the new dates (it is when the Task itself runs): use the inputs.

**Procedure** (infusion done): ``status`` ``completed``; ``basedOn`` exactly one ``ServiceRequest/<id>``
(the order's); ``performedDateTime`` (a time with an offset) is when it was given; ``subject``
``Patient/<id>`` (required by FHIR; the route checks it is the order's patient); ``note`` texts are the
reason; ``id``, ``meta``, ``text``, ``identifier``, ``code`` are ignored.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from mappings.ids import GATEWAY_BASE
from mappings.site_request import SiteRequestKind

__all__ = [
    "TASK_CODE_SYSTEM",
    "TASK_INPUT_SYSTEM",
    "TASK_CODE_KIND",
    "FieldError",
    "FhirSiteRequest",
    "read_request_task",
    "read_procedure",
]

TASK_CODE_SYSTEM: Final = "http://hl7.org/fhir/CodeSystem/task-code"
#: The input types of a request Task (as the gateway's own stored request Tasks carry them).
TASK_INPUT_SYSTEM: Final = f"{GATEWAY_BASE}/CodeSystem/cgt-task-input"
TASK_CODE_KIND: Final[dict[str, SiteRequestKind]] = {
    "abort": "cancel", "suspend": "hold", "resume": "release_hold", "change": "change"}

MAX_REASON_CHARS: Final = 2000
MAX_ITEMS: Final = 20  # codings, inputs, notes, identifiers
_ID = r"[A-Za-z0-9\-.]{1,64}"
_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_TASK_KEYS: Final = frozenset({
    "resourceType", "id", "meta", "text", "identifier", "status", "intent", "priority", "code",
    "description", "focus", "for", "authoredOn", "requester", "reasonCode", "note", "input"})
_PROCEDURE_KEYS: Final = frozenset({
    "resourceType", "id", "meta", "text", "identifier", "status", "code", "subject", "basedOn",
    "performedDateTime", "note"})
_HINTS: Final = {
    "executionPeriod": "give a change's new dates as input requested-start / requested-end",
    "reason": "this is FHIR R4: the reason goes in reasonCode.text or note",
    "performedPeriod": "give the time of the infusion as performedDateTime",
    "performedString": "give the time of the infusion as performedDateTime",
}
_INPUTS: Final = ("requested-start", "requested-end", "requested-appointment", "site-reason")


@dataclass(frozen=True)
class FieldError:
    """One problem, ``expression`` the FHIRPath of the element (``Task.code``, ``Task.input[1]``)."""

    expression: str
    message: str
    code: str = "invalid"  # OperationOutcome issue.code: invalid | required | value | structure


@dataclass(frozen=True)
class FhirSiteRequest:
    """A site request read from a resource: ``target`` is the referenced resource (type, id)."""

    kind: SiteRequestKind
    target_type: str  # "Task" (focus) or "ServiceRequest" (basedOn)
    target_id: str
    requested: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    subject_id: str | None = None  # Procedure.subject: Patient/<id>


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, expression: str, message: str, code: str = "invalid") -> None:
        self.items.append(FieldError(expression, message, code))


def _keys(resource: dict[str, Any], allowed: frozenset[str], name: str, errors: _Errors) -> None:
    for key in resource:
        if key not in allowed:
            hint = _HINTS.get(key)
            errors.add(f"{name}.{key}"[:200], "this element is not accepted" + (f": {hint}" if hint else ""),
                       "structure")


def _resource(body: Any, name: str, errors: _Errors) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        errors.add(name, f"the body must be a {name} resource (a JSON object)", "structure")
        return None
    if body.get("resourceType") != name:
        errors.add(f"{name}.resourceType", f"must be {name!r}", "structure")
        return None
    return body


def _type_checks(resource: dict[str, Any], name: str, errors: _Errors, shapes: dict[str, type]) -> None:
    for key, kind in shapes.items():
        value = resource.get(key)
        if value is not None and not isinstance(value, kind):
            what = "an object" if kind is dict else "an array" if kind is list else "a string"
            errors.add(f"{name}.{key}", f"must be {what}", "structure")
        elif isinstance(value, list) and len(value) > MAX_ITEMS:
            errors.add(f"{name}.{key}", f"at most {MAX_ITEMS} entries", "too-costly")


def _fixed(resource: dict[str, Any], key: str, want: str, name: str, errors: _Errors) -> None:
    value = resource.get(key)
    if value is None:
        errors.add(f"{name}.{key}", f"is required and must be {want!r}", "required")
    elif value != want:
        shown = value if isinstance(value, str) else type(value).__name__
        errors.add(f"{name}.{key}", f"must be {want!r}, not {str(shown)[:40]!r}", "value")


def _reference_id(value: Any, target: str, expression: str, base: str | None, errors: _Errors) -> str | None:
    """The id of a ``{"reference": "<target>/<id>"}`` (relative, or absolute under ``base``)."""
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        errors.add(expression, f"must be a Reference with reference '{target}/<id>'", "required")
        return None
    reference: str = value["reference"]
    if base and reference.startswith(base.rstrip("/") + "/"):
        reference = reference[len(base.rstrip("/")) + 1:]
    match = re.fullmatch(rf"{target}/({_ID})", reference)
    if match is None:
        errors.add(f"{expression}.reference", f"must be '{target}/<id>' (a {target} of this server), "
                   f"not {reference[:80]!r}", "value")
        return None
    return match.group(1)


def _date_time(value: Any, expression: str, errors: _Errors) -> str | None:
    """An ISO-8601 string of a FHIR dateTime with a time and an offset."""
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        errors.add(expression, "must be a dateTime with a time and a timezone offset, "
                   "e.g. 2026-12-15T09:00:00-05:00", "value")
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat()
    except ValueError:
        errors.add(expression, f"{value[:40]!r} is not a real date and time", "value")
        return None


def _clean_text(text: str, expression: str, errors: _Errors) -> str | None:
    text = text.strip()
    if any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\n\t" for c in text):
        errors.add(expression, "must not contain control or invisible formatting characters "
                   "(bidi marks, zero-width)", "value")
        return None
    return text or None


def _notes(resource: dict[str, Any], name: str, errors: _Errors) -> list[str]:
    texts = []
    for i, note in enumerate(resource.get("note") or []):
        if not isinstance(note, dict) or not isinstance(note.get("text"), str):
            errors.add(f"{name}.note[{i}]", "must be an Annotation with text", "structure")
            continue
        text = _clean_text(note["text"], f"{name}.note[{i}].text", errors)
        if text:
            texts.append(text)
    return texts


def _reason(parts: list[str], name: str, errors: _Errors) -> str | None:
    reason = "\n".join(parts) or None
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        errors.add(f"{name}.note", f"the reason (reasonCode, notes, site-reason) is longer than "
                   f"{MAX_REASON_CHARS} characters", "too-costly")
    return reason


def _task_code(resource: dict[str, Any], errors: _Errors) -> str | None:
    code = resource.get("code")
    if code is None:
        errors.add("Task.code", "is required: a coding of http://hl7.org/fhir/CodeSystem/task-code "
                   "(abort, suspend, resume or change)", "required")
        return None
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list) or len(codings) > MAX_ITEMS:
        errors.add("Task.code", "must be a CodeableConcept with a coding array", "structure")
        return None
    found = [c.get("code") for c in codings if isinstance(c, dict) and c.get("system") == TASK_CODE_SYSTEM]
    if len(found) != 1 or not isinstance(found[0], str) or found[0] not in TASK_CODE_KIND:
        shown = ", ".join(repr(str(f)[:20]) for f in found) or "none"
        errors.add("Task.code", f"needs exactly one coding of {TASK_CODE_SYSTEM} with code abort, suspend, "
                   f"resume or change (found {shown})", "value")
        return None
    return str(found[0])


def _input_code(item: dict[str, Any]) -> str | None:
    coding = (item.get("type") or {}).get("coding") if isinstance(item.get("type"), dict) else None
    if not isinstance(coding, list):
        return None
    codes = [c.get("code") for c in coding[:MAX_ITEMS]
             if isinstance(c, dict) and c.get("system") == TASK_INPUT_SYSTEM]
    return codes[0] if len(codes) == 1 and isinstance(codes[0], str) and codes[0] in _INPUTS else None


def _inputs(resource: dict[str, Any], task_code: str | None,
            errors: _Errors) -> tuple[dict[str, Any], str | None]:
    requested: dict[str, Any] = {}
    site_reason: str | None = None
    seen: set[str] = set()
    for i, item in enumerate(resource.get("input") or []):
        where = f"Task.input[{i}]"
        code = _input_code(item) if isinstance(item, dict) else None
        if code is None:
            errors.add(f"{where}.type", f"must have one coding of {TASK_INPUT_SYSTEM}: {', '.join(_INPUTS)}",
                       "value")
            continue
        if code in seen:
            errors.add(where, f"{code} is given twice", "value")
            continue
        seen.add(code)
        values = [k for k in item if k.startswith("value")]
        if code != "site-reason" and task_code not in (None, "change"):
            errors.add(where, f"{code} is only for code 'change'", "value")
        elif code in ("requested-start", "requested-end"):
            if values != ["valueDateTime"]:
                errors.add(where, f"{code} takes valueDateTime", "value")
            else:
                value = _date_time(item["valueDateTime"], f"{where}.valueDateTime", errors)
                if value is not None:
                    requested["start" if code == "requested-start" else "end"] = value
        elif code == "requested-appointment":
            value = item.get("valueCode", item.get("valueString"))
            if len(values) != 1 or value not in ("apheresis", "infusion"):
                errors.add(where, "requested-appointment takes valueCode (or valueString) 'apheresis' or "
                           "'infusion'", "value")
            else:
                requested["appointment"] = value
        else:  # site-reason
            if values != ["valueString"] or not isinstance(item["valueString"], str):
                errors.add(where, "site-reason takes valueString", "value")
            else:
                site_reason = _clean_text(item["valueString"], f"{where}.valueString", errors)
    return requested, site_reason


def _reason_code(resource: dict[str, Any], errors: _Errors) -> str | None:
    concept = resource.get("reasonCode")
    if concept is None:
        return None
    if not isinstance(concept, dict):
        errors.add("Task.reasonCode", "must be a CodeableConcept", "structure")
        return None
    text = concept.get("text")
    if text is None:
        codings = concept.get("coding")
        first = codings[0] if isinstance(codings, list) and codings and isinstance(codings[0], dict) else {}
        text = first.get("display")
    if text is not None and not isinstance(text, str):
        errors.add("Task.reasonCode.text", "must be a string", "structure")
        return None
    return _clean_text(text, "Task.reasonCode.text", errors) if text else None


def read_request_task(body: Any, *, base: str | None = None) -> FhirSiteRequest | list[FieldError]:
    """The site request a POSTed request Task asks for, or every problem found (see the module)."""
    errors = _Errors()
    resource = _resource(body, "Task", errors)
    if resource is None:
        return errors.items
    _keys(resource, _TASK_KEYS, "Task", errors)
    _type_checks(resource, "Task", errors, {
        "id": str, "meta": dict, "text": dict, "identifier": list, "priority": str, "description": str,
        "for": dict, "authoredOn": str, "requester": dict, "note": list, "input": list, "code": dict,
        "focus": dict})
    if errors.items:
        return errors.items
    _fixed(resource, "status", "requested", "Task", errors)
    _fixed(resource, "intent", "order", "Task", errors)
    task_code = _task_code(resource, errors)
    focus = _reference_id(resource.get("focus"), "Task", "Task.focus", base, errors)
    requested, site_reason = _inputs(resource, task_code, errors)
    if task_code == "change" and "start" not in requested and not any(
            e.expression.startswith("Task.input") for e in errors.items):
        errors.add("Task.input", "a change needs input requested-start (valueDateTime): the new date",
                   "required")
    start, end = requested.get("start"), requested.get("end")
    if start and end and datetime.fromisoformat(end) <= datetime.fromisoformat(start):
        errors.add("Task.input", "requested-end must be after requested-start", "value")
    parts = [p for p in (_reason_code(resource, errors), *_notes(resource, "Task", errors), site_reason) if p]
    reason = _reason(parts, "Task", errors)
    if errors.items or task_code is None or focus is None:
        return errors.items
    return FhirSiteRequest(TASK_CODE_KIND[task_code], "Task", focus, requested, reason)


def read_procedure(body: Any, *, base: str | None = None) -> FhirSiteRequest | list[FieldError]:
    """The ``infused`` site request of a POSTed Procedure, or every problem found (see the module)."""
    errors = _Errors()
    resource = _resource(body, "Procedure", errors)
    if resource is None:
        return errors.items
    _keys(resource, _PROCEDURE_KEYS, "Procedure", errors)
    _type_checks(resource, "Procedure", errors, {
        "id": str, "meta": dict, "text": dict, "identifier": list, "code": dict, "subject": dict,
        "basedOn": list, "note": list})
    if errors.items:
        return errors.items
    _fixed(resource, "status", "completed", "Procedure", errors)
    based_on = resource.get("basedOn") or []
    target = None
    if len(based_on) != 1:
        errors.add("Procedure.basedOn", "must hold exactly one reference: the order's ServiceRequest",
                   "required")
    else:
        target = _reference_id(based_on[0], "ServiceRequest", "Procedure.basedOn[0]", base, errors)
    subject = _reference_id(resource.get("subject"), "Patient", "Procedure.subject", base, errors)
    administered = None
    if "performedDateTime" not in resource:
        errors.add("Procedure.performedDateTime", "is required: when the product was infused", "required")
    else:
        administered = _date_time(resource["performedDateTime"], "Procedure.performedDateTime", errors)
    reason = _reason(_notes(resource, "Procedure", errors), "Procedure", errors)
    if errors.items or target is None or administered is None:
        return errors.items
    return FhirSiteRequest("infused", "ServiceRequest", target, {"administered_at": administered}, reason,
                           subject_id=subject)
