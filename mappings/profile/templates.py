"""Per-field override templates of a site profile (``hl7v2.overrides``), sandboxed.

A site writes, for example, ``OBR-4: "{{ product.local_code }}^{{ product.display }}^L"``.  The
template runs in Jinja2's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` with
:class:`~jinja2.StrictUndefined`, and sees only the names in :data:`CONTEXT_SCHEMA`: the order,
the event and the mapped codes, all as plain dicts, lists and strings (dates already in HL7 form).
Every ``{{ value }}`` is HL7-escaped on output (``finalize``), so user text can never add a field,
component or segment; the literal text of the template supplies the structure (``^``, ``&``, ``~``).

:func:`check_template` runs when the profile is loaded: a syntax error, an unknown variable or
attribute (``product.local_cod``), or a ``|``/line break in the literal text is a profile error
with a precise reason.  :func:`render_template` runs at translation time and raises
:class:`TemplateRenderError` (a ``ValueError``) on failure; the renderer then keeps its default
value and reports a mapping issue.

Every evaluation is bounded (:mod:`mappings.profile.template_sandbox`: output size, steps, time,
integer size, repetition, ``range``) and the check refuses the dangerous constructs up front with a
named rule (:mod:`mappings.profile.template_rules`).  With ``demographics: mrn_only`` the patient in
the context holds only ``mrn`` (:func:`context_schema`): a template naming ``order.patient.family``,
``given``, ``birth_date`` or ``sex`` is refused at check time, and at render time those values are
simply not there.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any, Final

from jinja2 import Template, TemplateError, TemplateSyntaxError, nodes

from mappings.profile.template_rules import rule_problems
from mappings.profile.template_sandbox import (
    ALLOWED_GLOBALS,
    REFUSED_GLOBALS,
    RenderBudget,
    TemplateLimitExceeded,
    TemplateLimits,
    bounded_environment,
    compile_bounded,
    render_bounded,
)

__all__ = [
    "ANY",
    "CONTEXT_SCHEMA",
    "DEMOGRAPHIC_FIELDS",
    "RenderBudget",
    "TemplateLimits",
    "TemplateRenderError",
    "check_template",
    "context_schema",
    "compile_template",
    "render_template",
]

ANY: Final = "any"  # a free-form mapping (event.data): its keys are not checked at load time
_STR: Final = "str"
_LIST: Final = "list"

Schema = Mapping[str, Any]

#: What an override template can read.  Leaves are ``"str"`` (strings, numbers, booleans or null),
#: ``"list"`` (of strings) or ``"any"`` (the event's own data).
CONTEXT_SCHEMA: Final[Schema] = {
    "order": {
        "order_id": _STR, "coi": _STR, "product_code": _STR, "priority": _STR, "note": _STR,
        "status": _STR, "placer_order_number": _STR, "filler_order_number": _STR, "created_at": _STR,
        "patient": {"mrn": _STR, "family": _STR, "given": _LIST, "birth_date": _STR, "sex": _STR},
        "ordering_provider": {"npi": _STR, "family": _STR, "given": _LIST},
        "requested": {"apheresis_date": _STR, "infusion_date": _STR},
    },
    "event": {
        "event_id": _STR, "type": _STR, "occurred_at": _STR, "sequence": _STR, "late": _STR,
        "status_after": _STR, "data": ANY,
    },
    "product": {"code": _STR, "name": _STR, "local_code": _STR, "display": _STR, "system": _STR},
    "manufacturer": {"id": _STR, "name": _STR},
    "site": {"id": _STR, "name": _STR},
    "codes": {
        "order_control": _STR, "order_status": _STR,
        "business_status": {"system": _STR, "code": _STR, "display": _STR},
    },
}


#: The patient fields a ``demographics: mrn_only`` site may not see (in messages or templates).
DEMOGRAPHIC_FIELDS: Final = frozenset({"family", "given", "birth_date", "sex"})

_DEFAULT_LIMITS: Final = TemplateLimits()
_GLOBALS: Final = ALLOWED_GLOBALS | REFUSED_GLOBALS  # reported by the rules, not as unknown variables


def context_schema(demographics: str = "full") -> Schema:
    """:data:`CONTEXT_SCHEMA`, without the patient's demographics unless ``demographics`` is ``full``."""
    if demographics == "full":
        return CONTEXT_SCHEMA
    order = dict(CONTEXT_SCHEMA["order"])
    order["patient"] = {k: v for k, v in order["patient"].items() if k not in DEMOGRAPHIC_FIELDS}
    return {**CONTEXT_SCHEMA, "order": order}


class TemplateRenderError(ValueError):
    """An override template failed at translation time (undefined value, sandbox refusal...)."""


def compile_template(source: str, limits: TemplateLimits = _DEFAULT_LIMITS) -> Template:
    """The compiled template for ``source`` (cached); raises ``TemplateSyntaxError``."""
    return compile_bounded(source, limits)


def _chain(node: nodes.Node) -> tuple[list[str | int] | None, nodes.Node | None]:
    """``order.patient.given[0]`` -> (['order', 'patient', 'given', 0], None).

    When the chain does not end in a plain name (``(x | upper).foo``) returns (None, base node).
    A non-constant subscript (``order[x]``) stops the chain: the part before it is checked.
    """
    parts: list[str | int] = []
    current = node
    while True:
        if isinstance(current, nodes.Getattr):
            parts.append(current.attr)
            current = current.node
        elif isinstance(current, nodes.Getitem) and isinstance(current.arg, nodes.Const) and isinstance(
            current.arg.value, (str, int)
        ):
            parts.append(current.arg.value)
            current = current.node
        elif isinstance(current, nodes.Getitem):
            parts.clear()  # order.data[some_var]: only the base is checked
            current = current.node
        elif isinstance(current, nodes.Name):
            parts.append(current.name)
            parts.reverse()
            return parts, None
        else:
            return None, current


def _check_chain(parts: list[str | int], root: Schema) -> str | None:
    schema: Any = root
    walked = str(parts[0])
    for part in parts:
        if isinstance(part, str) and part.startswith("_"):
            return None  # reported by the rules (template-attribute)
        if schema == ANY:
            return None
        if schema == _LIST:
            if isinstance(part, int) or hasattr(list, part):
                schema = _STR
                walked += f"[{part}]" if isinstance(part, int) else f".{part}"
                continue
            return f"'{walked}' is a list and has no attribute '{part}'"
        if schema == _STR:
            if isinstance(part, str) and hasattr(str, part):
                return None  # a string method such as upper(): the rules and the sandbox decide
            return f"'{walked}' is a value and has no attribute '{part}'"
        if part not in schema:
            if walked == "order.patient" and part in DEMOGRAPHIC_FIELDS:
                return (f"'order.patient.{part}' is not available: the profile's patient.demographics is "
                        "mrn_only (rule template-demographics)")
            where = "" if schema is root else f" in '{walked}'"
            return f"unknown variable '{part}'{where}; available: {', '.join(sorted(schema))}"
        if schema is not root:
            walked += f".{part}"
        schema = schema[part]
    return None


def _problems(node: nodes.Node, local_names: set[str], root: Schema, found: list[str]) -> None:
    if isinstance(node, (nodes.Getattr, nodes.Getitem, nodes.Name)):
        parts, base = _chain(node)
        if parts is not None:
            if isinstance(parts[0], str) and parts[0] not in local_names and parts[0] not in _GLOBALS \
                    and not parts[0].startswith("_"):
                problem = _check_chain(parts, root)
                if problem is not None and problem not in found:
                    found.append(problem)
        # visit whatever the chain did not cover: the base, and non-constant subscripts
        current: nodes.Node | None = node
        while isinstance(current, (nodes.Getattr, nodes.Getitem)):
            if isinstance(current, nodes.Getitem) and not isinstance(current.arg, nodes.Const):
                _problems(current.arg, local_names, root, found)
            current = current.node
        if base is not None:
            _problems(base, local_names, root, found)
        return
    for child in node.iter_child_nodes():
        _problems(child, local_names, root, found)


def check_template(source: str, limits: TemplateLimits = _DEFAULT_LIMITS, demographics: str = "full") -> None:
    """Raise ``ValueError`` with a precise reason if ``source`` is not a usable override template.

    The reason names the rule a refused construct breaks (``... (rule template-power)``).
    ``demographics`` is the profile's ``patient.demographics``: with ``mrn_only`` the patient's
    name, birth date and sex are unknown variables.
    """
    try:
        ast = bounded_environment(limits).parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    for data in ast.find_all(nodes.TemplateData):  # control characters include the MLLP block bytes
        if any(c == "|" or unicodedata.category(c) == "Cc" for c in data.data):
            raise ValueError("literal text of an override must not contain '|', a line break or a control "
                             "character")
    found = rule_problems(ast, limits)
    local_names = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    if any(True for _ in ast.find_all(nodes.For)):
        local_names.add("loop")  # the loop variable of {% for %}
    _problems(ast, local_names, context_schema(demographics), found)
    if found:
        raise ValueError("; ".join(found))
    try:
        compile_template(source, limits)
    except TemplateError as exc:
        raise ValueError(f"template error: {exc.message or type(exc).__name__}") from None


def render_template(source: str, context: Mapping[str, Any], limits: TemplateLimits = _DEFAULT_LIMITS,
                    budget: RenderBudget | None = None) -> str:
    """Render an override within ``limits``; the result is one HL7 field value (user values escaped).

    Raises :class:`TemplateRenderError` when the template fails or passes a bound (the caller keeps
    the field's default value).
    """
    try:
        value = render_bounded(source, context, limits, budget)
    except TemplateLimitExceeded as exc:
        raise TemplateRenderError(f"override template stopped: {exc}") from None
    except TemplateError as exc:  # UndefinedError, SecurityError, TemplateSyntaxError
        raise TemplateRenderError(f"override template failed: {exc.message or type(exc).__name__}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, RecursionError, MemoryError) as exc:
        raise TemplateRenderError(f"override template failed: {type(exc).__name__}") from None
    if "|" in value or any(unicodedata.category(c) == "Cc" for c in value):
        raise TemplateRenderError("override template produced a field separator, a line break or a "
                                  "control character")
    return value
