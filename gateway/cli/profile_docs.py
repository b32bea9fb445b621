"""The generated parts of ``docs/profiles.md``, the site profile reference.

``python -m gateway.cli.profile_docs`` (or ``cgt-gateway profile docs``) rewrites every block between
``<!-- BEGIN GENERATED: <name> -->`` and ``<!-- END GENERATED: <name> -->``; the hand-written text
around them stays.  ``tests/unit/test_profile_docs.py`` fails when a block differs from what this
module renders now, so the reference cannot drift from the schema or from the renderer:

* ``keys``: every key of :class:`mappings.profile.schema.SiteProfile` and its sub-models, from the
  model's JSON schema (type, default, allowed values, constraints) and :data:`DESCRIPTIONS` (a key
  without a description, or a description of no key, is an error);
* ``example``: ``fixtures/profiles/site-a.yaml`` as it is;
* ``coi-ORC-4``, ``coi-OBX``, ``coi-ZCG``: the site-a order message rendered with each ``coi_location``;
* ``emits``: per event type, the HL7v2 messages each version and order message style sends, from
  replaying the journeys under ``fixtures/events/`` through the real renderer;
* ``template-context``: the names an override template can read (``CONTEXT_SCHEMA``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gateway.cli.goldens import FIXTURES, GOLDEN_NOW, load_case
from mappings.profile.loader import load_profile
from mappings.profile.schema import SiteProfile
from mappings.profile.templates import CONTEXT_SCHEMA, DEMOGRAPHIC_FIELDS

__all__ = [
    "DOC",
    "DESCRIPTIONS",
    "VARIANTS",
    "render_blocks",
    "render_keys",
    "schema_keys",
    "replace_blocks",
    "main",
]

DOC = Path(__file__).resolve().parents[2] / "docs" / "profiles.md"
EXAMPLE = FIXTURES / "profiles" / "site-a.yaml"
JOURNEYS = ("journey-autologous", "journey-cancelled")
_BLOCK = re.compile(r"(<!-- BEGIN GENERATED: ([\w.-]+) -->\n)(.*?)(<!-- END GENERATED: \2 -->)", re.S)

_URI = "an absolute URI: `http(s)://...`, `urn:oid:<digits.dots>` or `urn:uuid:<uuid>`"
#: One line per key (dotted path; ``<...>`` for a map key).  What the JSON schema cannot say.
DESCRIPTIONS: dict[str, str] = {
    "site_id": "The site's id, as in the configuration's `sites[].id` and in orders' `site_id` "
               "(lowercase letters, digits, `-`).",
    "name": "The site's name (Organization.name, shown in FHIR displays).",
    "timezone": "IANA time zone (`America/New_York`); HL7v2 timestamps are written in it.",
    "organization_identifiers": "The site Organization's identifiers (at least one).",
    "organization_identifiers[].system": f"Identifier system: {_URI}.",
    "organization_identifiers[].value": "Identifier value.",
    "patient": "How the patient is identified and how much of them the site receives.",
    "patient.mrn_system": f"The site's MRN system (Patient.identifier MR; PID-3): {_URI}.",
    "patient.demographics": "`full`: the manufacturer's name, birth date and sex are sent; `mrn_only`: "
                            "only the MRN (also hidden from override templates and GET /v1/orders).",
    "orders": "Order identifier systems.",
    "orders.placer_system": f"ServiceRequest.identifier (PLAC), ORC-2 / OBR-2: {_URI}.",
    "orders.filler_system": f"ServiceRequest and Task identifier (FILL), ORC-3 / OBR-3: {_URI}; differs from "
                            "placer_system.",
    "orders.site_order_system": "The system of the site's own order number (told by HL7v2 `NA`); default "
                                "`https://cgt-gateway.example.org/fhir/sid/site/<site_id>/order-number`.",
    "products": "Manufacturer product code (e.g. `CART-CD19`) -> the site's local orderable; at least one.",
    "products.<key>.local_code": "The site's orderable code (ServiceRequest.code, OBR-4.1).",
    "products.<key>.display": "Its display text (OBR-4.2).",
    "products.<key>.system": f"The orderable code system: {_URI}.",
    "products.<key>.manufacturer": "The manufacturer id (e.g. `acme-bio`) when two share a product code.",
    "measurement_codes": "Our measurement code (`tnc_count`, `cd3_count`, ... see README) -> the site's "
                         "code (Observation.code, OBX-3); unknown keys are refused.",
    "measurement_codes.<key>.system": f"Code system: {_URI}.",
    "measurement_codes.<key>.code": "The site's code (never transliterated: must fit hl7v2.charset).",
    "measurement_codes.<key>.display": "Display text.",
    "business_status": "The site's codes for our business statuses.",
    "business_status.overrides": "Our status (`placed`, `confirmed`, ..., `infused`, `on_hold`, `cancelled`, "
                                 "`failed`) -> the site's coding (Task.businessStatus, ORC-16 / ORC-5 text).",
    "business_status.overrides.<key>.system": f"Code system: {_URI}.",
    "business_status.overrides.<key>.code": "The site's code.",
    "business_status.overrides.<key>.display": "Display text (required).",
    "hl7v2": "Whether and how the site receives HL7v2 (see the sections below).",
    "hl7v2.enabled": "`false`: no HL7v2 message is rendered for this site (it polls FHIR).",
    "hl7v2.version": "HL7 version written in MSH-12; every message validates against it.",
    "hl7v2.order_message": "Order message style: `OML^O21` (2.4, 2.5.1) or `ORM^O01` (any version).",
    "hl7v2.results": "`ORU^R01` for measurements and release results.",
    "hl7v2.scheduling": "`SIU^S12/S13/S15` for apheresis and infusion appointments.",
    "hl7v2.blood_product_status": "`BPS^O29` / `BTS^O31` for blood-bank modules (2.5.1 only).",
    "hl7v2.sending_application": "MSH-3 (HD: components allowed, no other delimiter).",
    "hl7v2.sending_facility": "MSH-4.",
    "hl7v2.receiving_application": "MSH-5.",
    "hl7v2.receiving_facility": "MSH-6.",
    "hl7v2.processing_id": "MSH-11 (HL7 table 0103): `P` production, `T` training, `D` debugging.",
    "hl7v2.ack_mode": "`original` (MSH-15/16 empty) or `enhanced` (MSH-15/16, default `AL`/`AL`).",
    "hl7v2.accept_ack_type": "MSH-15 in enhanced mode (HL7 table 0155).",
    "hl7v2.application_ack_type": "MSH-16 in enhanced mode (HL7 table 0155).",
    "hl7v2.coi_location": "Where the Chain of Identity goes: `ORC-4` (placer group number), an `OBX`, or a "
                          "`ZCG` segment (see CoI placements).",
    "hl7v2.pid3_assigning_authority": "PID-3.4.",
    "hl7v2.pid3_identifier_type": "PID-3.5 (HL7 table 0203).",
    "hl7v2.charset": "MSH-18 (HL7 table 0211); `null` (empty) = ASCII; `UNICODE UTF-8` needs 2.5.1.",
    "hl7v2.charset_fallback": "Text the charset cannot hold: `transliterate` (nearest characters) or "
                              "`refuse` (the message becomes a dead letter with an alert).",
    "hl7v2.pv1": "A PV1 after PID; absent: no PV1.",
    "hl7v2.pv1.patient_class": "PV1-2 (HL7 table 0004, `O` outpatient).",
    "hl7v2.pv1.assigned_location": "PV1-3 (PL); at least one component.",
    "hl7v2.pv1.assigned_location.point_of_care": "PL.1.",
    "hl7v2.pv1.assigned_location.room": "PL.2.",
    "hl7v2.pv1.assigned_location.bed": "PL.3.",
    "hl7v2.pv1.assigned_location.facility": "PL.4.",
    "hl7v2.pv1.assigned_location.location_status": "PL.5.",
    "hl7v2.pv1.assigned_location.person_location_type": "PL.6 (HL7 table 0305, `C` clinic).",
    "hl7v2.pv1.assigned_location.building": "PL.7.",
    "hl7v2.pv1.assigned_location.floor": "PL.8.",
    "hl7v2.pv1.assigned_location.description": "PL.9.",
    "hl7v2.overrides": "Field path (`OBR-4`; segments PID, PV1, ORC, OBR, OBX, NTE, TQ1, SCH, AIS, ZCG, BPO, "
                       "BPX, BTX) -> a sandboxed Jinja2 template (see Override templates).",
    "hl7v2.inbound": "How the gateway reads what the site sends back (see Inbound keys).",
    "hl7v2.inbound.max_message_bytes": "Bigger inbound messages are refused (AR) before parsing.",
    "hl7v2.inbound.max_segments": "Messages with more segments are refused (AR).",
    "hl7v2.inbound.change_appointment": "Which date an order change (ORC-1 `XO`) moves: `by_stage` (the "
                                        "apheresis date before collection, the infusion date after), "
                                        "`apheresis` or `infusion`.",
    "hl7v2.inbound.appointment_codes": "SIU: SCH-7.1 / AIS-3.1 codes naming each appointment.",
    "hl7v2.inbound.appointment_codes.apheresis": "Codes of the apheresis appointment (exact).",
    "hl7v2.inbound.appointment_codes.infusion": "Codes of the infusion appointment (exact).",
    "hl7v2.inbound.infused_obx_code": "HL7 2.3 `ORU^R01`: the OBX-3.1 meaning \"infusion done\".",
    "delivery": "Where the site's outputs go; each endpoint is one outbox destination (FIFO).",
    "delivery.mllp": "The site's interface engine over MLLP (`<site>/mllp`).",
    "delivery.mllp.enabled": "`false` keeps the endpoint but queues nothing for it.",
    "delivery.mllp.host": "Host name or address.",
    "delivery.mllp.port": "TCP port.",
    "delivery.mllp.tls": "TLS; the server certificate and host name are verified.",
    "delivery.mllp.tls_ca_file": "PEM file of the CA(s) to trust instead of the system's.",
    "delivery.mllp.connect_timeout_s": "Seconds to connect.",
    "delivery.mllp.read_timeout_s": "Seconds to wait for the ACK; then the message is retried.",
    "delivery.mllp.wait_for_application_ack": "Enhanced mode: after the commit ACK (CA) also wait for "
                                              "the application ACK.",
    "delivery.fhir_push": "The site's FHIR server (`<site>/fhir`): each event's resources as one "
                          "transaction Bundle.",
    "delivery.fhir_push.enabled": "`false` keeps the endpoint but queues nothing for it.",
    "delivery.fhir_push.base_url": "The FHIR base URL (the Bundle is POSTed to it).",
    "delivery.fhir_push.auth": "How to authenticate; secrets are named by environment variable, never "
                               "written in the profile.",
    "delivery.fhir_push.auth.type": "`none`, `bearer` (needs token_env) or `oauth2_client_credentials` "
                                    "(needs token_url, client_id, client_secret_env).",
    "delivery.fhir_push.auth.token_env": "bearer: the environment variable holding the token.",
    "delivery.fhir_push.auth.token_url": "oauth2: the token endpoint.",
    "delivery.fhir_push.auth.client_id": "oauth2: the client id.",
    "delivery.fhir_push.auth.client_secret_env": "oauth2: the environment variable holding the secret.",
    "delivery.fhir_push.auth.scope": "oauth2: the scope requested (optional).",
    "delivery.fhir_push.timeout_s": "Seconds for one request.",
    "delivery.max_attempts_before_alert": "A retries-exceeded alert after this many attempts of one message.",
    "inbound": "Where the gateway listens for the site (see Inbound keys).",
    "inbound.mllp": "An MLLP listener for the site's messages back (cancel, hold, change, order number, "
                    "appointments, infusion done).",
    "inbound.mllp.enabled": "`false` keeps the section but does not listen.",
    "inbound.mllp.host": "Address to bind.",
    "inbound.mllp.port": "Port to bind.",
    "inbound.mllp.tls": "TLS; needs tls_cert_file and tls_key_file.",
    "inbound.mllp.tls_cert_file": "PEM certificate (chain).",
    "inbound.mllp.tls_key_file": "PEM private key.",
    "inbound.mllp.allowed_peers": "IP addresses or CIDR networks allowed to connect; empty: any peer.",
    "notifications": "How the site hears of notable order events beyond its normal messages (issue 16).",
    "notifications.release_failed": ("Channels for a failed release: `webhook` (the manufacturer's), "
                                     "`subscription` (an `order-alert` Flag), `hl7v2` (accepted, renders "
                                     "nothing yet: see docs/alerts.md)."),
    "subscriptions": "FHIR Subscriptions (R4 backport) this site's EHR may create (docs/subscriptions.md).",
    "subscriptions.allowed_endpoints": ("URL prefixes a Subscription's `channel.endpoint` must start with "
                                        "(no SSRF); empty: the site may not subscribe."),
    "version": "Set by the loader: the hash of the file's bytes, recorded on every output. Do not write it.",
}

_CONSTRAINTS = (("minLength", "length ≥ {}"), ("maxLength", "length ≤ {}"), ("minItems", "≥ {} items"),
                ("maxItems", "≤ {} items"), ("minimum", "≥ {}"), ("maximum", "≤ {}"),
                ("exclusiveMinimum", "> {}"), ("exclusiveMaximum", "< {}"), ("minProperties", "≥ {} entries"),
                ("pattern", "pattern `{}`"), ("format", "format {}"))


class _Key:
    def __init__(self, path: str, type_: str, default: str, allowed: str) -> None:
        self.path, self.type, self.default, self.allowed = path, type_, default, allowed


def _deref(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[-1]]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def _variants(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> tuple[list[Mapping[str, Any]], bool]:
    """The non-null alternatives of ``schema`` and whether ``null`` is allowed."""
    schema = _deref(schema, defs)
    options = schema.get("anyOf") or schema.get("oneOf")
    if not options:
        return [schema], schema.get("type") == "null"
    resolved = [_deref(o, defs) for o in options]
    return [o for o in resolved if o.get("type") != "null"], any(o.get("type") == "null" for o in resolved)


def _type_name(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    if "enum" in schema or "const" in schema:
        return "string"
    kind = schema.get("type")
    if kind == "array":
        return f"list of {_type_name(_deref(schema.get('items', {}), defs), defs)}"
    if kind == "object" and "properties" in schema:
        return f"mapping ({schema.get('title', 'object')})"
    if kind == "object":
        return f"map of {_type_name(_variants(schema.get('additionalProperties', {}), defs)[0][0], defs)}"
    return {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean"}.get(
        str(kind), str(kind))


def _allowed(schema: Mapping[str, Any]) -> list[str]:
    if "enum" in schema:
        return ["one of " + ", ".join(f"`{v}`" for v in schema["enum"])]
    if "const" in schema:
        return [f"`{schema['const']}`"]
    return [text.format(schema[name]) for name, text in _CONSTRAINTS if name in schema]


def _default(field: Mapping[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in field:
        return "`{}`" if _deref(field, {}).get("type") == "object" else "optional"
    value = field["default"]
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict | list) and len(value) > 0:
        return "its keys' defaults" if isinstance(value, dict) else "`" + ", ".join(map(str, value)) + "`"
    if isinstance(value, dict | list):
        return "`{}`" if isinstance(value, dict) else "`[]`"
    return f'`"{value}"`' if value == "" else f"`{value}`"


def _keys(schema: Mapping[str, Any], defs: Mapping[str, Any], prefix: str) -> Iterator[_Key]:
    required = set(schema.get("required", []))
    for name, field in schema.get("properties", {}).items():
        path = f"{prefix}{name}"
        options, nullable = _variants(field, defs)
        types = [_type_name(o, defs) for o in options]
        allowed = [text for o in options for text in _allowed(o)]
        type_ = " or ".join(dict.fromkeys(types)) + (" or null" if nullable else "")
        yield _Key(path, type_, _default(field, name in required), "; ".join(allowed))
        for option in options:
            if option.get("type") == "object" and "properties" in option:
                yield from _keys(option, defs, f"{path}.")
            elif option.get("type") == "array":
                items = _deref(option.get("items", {}), defs)
                if "properties" in items:
                    yield from _keys(items, defs, f"{path}[].")
            elif option.get("type") == "object":
                value = _variants(option.get("additionalProperties", {}), defs)[0][0]
                if "properties" in value:
                    yield from _keys(value, defs, f"{path}.<key>.")


def schema_keys() -> list[_Key]:
    """Every key of a site profile, depth first, from :class:`SiteProfile`'s JSON schema."""
    schema = SiteProfile.model_json_schema(mode="validation")
    return list(_keys(schema, schema.get("$defs", {}), ""))


def render_keys() -> str:
    keys = schema_keys()
    paths = {key.path for key in keys}
    undescribed = sorted(paths - set(DESCRIPTIONS))
    unknown = sorted(set(DESCRIPTIONS) - paths)
    if undescribed or unknown:
        raise ValueError(f"DESCRIPTIONS out of step with SiteProfile: no description for {undescribed}; "
                         f"descriptions of no key: {unknown}")
    lines = ["| Key | Type | Default | Allowed values and limits | Description |", "|---|---|---|---|---|"]
    for key in keys:
        cells = [f"`{key.path}`", key.type, key.default, key.allowed, DESCRIPTIONS[key.path]]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def render_example() -> str:
    return "```yaml\n" + EXAMPLE.read_text(encoding="utf-8").rstrip("\n") + "\n```\n"


def render_template_context() -> str:
    lines = ["| Name | Value |", "|---|---|"]

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, leaf in node.items():
            path = f"{prefix}{name}"
            if isinstance(leaf, Mapping):
                walk(leaf, f"{path}.")
                continue
            value = {"str": "text", "list": "list of text", "any": "the event's `data` (any keys)"}[leaf]
            if prefix == "order.patient." and name in DEMOGRAPHIC_FIELDS:
                value += " (absent with `demographics: mrn_only`)"
            lines.append(f"| `{path}` | {value} |")

    walk(CONTEXT_SCHEMA, "")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ rendering with the real renderer

#: (column title, hl7v2 settings) of the emission table: every version and order message style.
VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("2.3 ORM", {"version": "2.3", "order_message": "ORM^O01", "charset": None}),
    ("2.4 ORM", {"version": "2.4", "order_message": "ORM^O01", "charset": None}),
    ("2.4 OML", {"version": "2.4", "order_message": "OML^O21", "charset": None}),
    ("2.5.1 ORM", {"version": "2.5.1", "order_message": "ORM^O01"}),
    ("2.5.1 OML", {"version": "2.5.1", "order_message": "OML^O21"}),
)
_FLAGS = ("results", "scheduling", "blood_product_status")

Steps = Callable[[SiteProfile, str], list[Any]]  # (profile, journey) -> PreviewSteps


def _profile(base: SiteProfile, **hl7v2: Any) -> SiteProfile:
    raw = base.model_dump(mode="json")
    raw["hl7v2"] = {**raw["hl7v2"], **hl7v2}
    return SiteProfile.model_validate(raw)


def _label(er7: str) -> str:
    segments = [s.split("|") for s in er7.split("\r") if s]
    label = "^".join(segments[0][8].split("^")[:2])  # MSH-9.1^9.2 (the structure aside)
    orc = next((s for s in segments if s[0] == "ORC"), None)
    return f"{label} {orc[1]}" if orc is not None and len(orc) > 1 and orc[1] else label


def _emitted(steps_of: Steps, profile: SiteProfile) -> dict[str, list[str]]:
    """Event type -> the labels of the messages it produced in the journeys (first seen first)."""
    emitted: dict[str, list[str]] = {}
    for journey in JOURNEYS:
        for step in steps_of(profile, journey):
            labels = emitted.setdefault(step.event_type.value, [])
            for message in step.messages:
                if _label(message.er7) not in labels:
                    labels.append(_label(message.er7))
    return emitted


def render_emits(base: SiteProfile, steps_of: Steps) -> str:
    columns: list[dict[str, list[str]]] = []
    for _, settings in VARIANTS:
        flags = {f: True for f in _FLAGS if f != "blood_product_status" or settings["version"] == "2.5.1"}
        everything = _emitted(steps_of, _profile(base, **settings, **flags))
        for flag in flags:  # the messages that disappear without a flag are tagged with it
            without = _emitted(steps_of, _profile(base, **settings, **{**flags, flag: False}))
            for event_type, labels in everything.items():
                everything[event_type] = [
                    f"{label} ({flag})" if label not in without.get(event_type, []) and "(" not in label
                    else label for label in labels]
        columns.append(everything)
    event_types = list(dict.fromkeys(t for column in columns for t in column))
    lines = ["| Event | " + " | ".join(title for title, _ in VARIANTS) + " |",
             "|---|" + "---|" * len(VARIANTS)]
    for event_type in event_types:
        cells = [", ".join(column.get(event_type, [])) or "none" for column in columns]
        lines.append(f"| `{event_type}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def render_coi(base: SiteProfile, steps_of: Steps, location: str) -> str:
    """The order message of ``journey-autologous`` (order.placed) with ``coi_location: location``."""
    steps = steps_of(_profile(base, coi_location=location), JOURNEYS[0])
    segments = [s for s in steps[0].messages[0].er7.split("\r") if s]
    return "```\n" + "\n".join(segments) + "\n```\n"


def render_blocks(steps_of: Steps) -> dict[str, str]:
    """Every generated block of docs/profiles.md, by name."""
    base = load_profile(EXAMPLE)
    blocks = {"keys": render_keys(), "example": render_example(),
              "template-context": render_template_context(), "emits": render_emits(base, steps_of)}
    for location in ("ORC-4", "OBX", "ZCG"):
        blocks[f"coi-{location}"] = render_coi(base, steps_of, location)
    return blocks


def replace_blocks(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` with each generated block's content replaced; every block must be there exactly once."""
    found = [m.group(2) for m in _BLOCK.finditer(text)]
    if sorted(found) != sorted(blocks):
        raise ValueError(f"docs/profiles.md has generated blocks {sorted(found)}, expected {sorted(blocks)}")
    return _BLOCK.sub(lambda m: m.group(1) + blocks[m.group(2)] + m.group(4), text)


def preview_steps() -> Steps:
    """The real preview (lifecycle replay + translation + rendering) at the goldens' fixed time."""
    from gateway.config import load_settings
    from gateway.intake.replay import preview_order
    from terminology import load_terminology

    settings, terminology = load_settings(), load_terminology()
    cache: dict[tuple[str, str], list[Any]] = {}

    def steps_of(profile: SiteProfile, journey: str) -> list[Any]:
        key = (profile.model_dump_json(), journey)
        if key not in cache:
            case = load_case(FIXTURES / "events" / f"{journey}.json").for_site(profile.site_id)
            cache[key] = preview_order(settings, profile, case.order, case.events, terminology,
                                       now=GOLDEN_NOW, placed_at=case.placed_at)
        return cache[key]

    return steps_of


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gateway.cli.profile_docs``: rewrite the generated blocks of docs/profiles.md."""
    DOC.write_text(replace_blocks(DOC.read_text(encoding="utf-8"), render_blocks(preview_steps())),
                   encoding="utf-8")
    print(DOC)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
