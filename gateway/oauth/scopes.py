"""Scopes: SMART v2 ``system/<Type>.<cruds>`` and the REST API's own ``orders.read``,
``orders.write`` and ``admin``.

A scope string expands to *atoms*: ``orders.read``, ``admin``, ``system/Task.r``, ``system/*.s``...
(one permission letter each).  A required atom is covered by the same atom or by its ``system/*``
form.  SMART v1 forms are accepted as aliases: ``system/Task.read`` = ``.rs``, ``.write`` = ``.cud``,
``.*`` = ``.cruds``.  v2 permission letters must come in the order ``c r u d s``, each once.

What a role may hold (:func:`role_allows`), whatever a client is registered with:

==============  ===========================================================================
manufacturer    ``orders.read``, ``orders.write``, ``system/<T>.r``/``.s``
site            ``orders.read``, ``system/<T>.r``/``.s``, ``system/Task.c``, ``system/Procedure.c``,
                ``system/Subscription.c``/``.d``
admin           ``admin``, ``orders.read``, ``system/<T>.r``/``.s``, ``system/Subscription.c``/``.d``
==============  ===========================================================================

``u`` is never granted, ``d`` only on Subscription (no other such interaction).  Static tokens keep
every scope their role allows (their principal carries no scope set).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.requests import Request

from gateway.store.search_params import RESOURCE_TYPES

__all__ = [
    "API_SCOPES",
    "FHIR_TYPES",
    "CREATE_TYPES",
    "MAX_SCOPES",
    "ScopeError",
    "expand",
    "parse_scopes",
    "covers",
    "role_allows",
    "check_role_allows",
    "scopes_supported",
    "fhir_scope",
]

API_SCOPES = ("orders.read", "orders.write", "admin")
CREATE_TYPES = ("Task", "Procedure")  # sites' change requests (issue 13): system/Task.c, system/Procedure.c
# issue 16: a site (or admin) creates and deletes its Subscriptions; the topics are Basic resources
SUBSCRIPTION_TYPES = ("Subscription", "Basic")
FHIR_TYPES = frozenset(RESOURCE_TYPES) | frozenset(CREATE_TYPES) | frozenset(SUBSCRIPTION_TYPES)
MAX_SCOPES = 50  # scopes in one request or registration
_LETTERS = "cruds"
_V1 = {"read": "rs", "write": "cud", "*": "cruds"}
_SMART = re.compile(r"^system/(\*|[A-Z][A-Za-z]{0,63})\.([a-z*]{1,5})$")
_TYPE_NAME = re.compile(r"^[A-Z][A-Za-z]{0,63}$")


class ScopeError(ValueError):
    """A scope string that is not one we know: the message names the scope and why."""


def _clip(scope: str) -> str:
    return scope if len(scope) <= 80 else scope[:80] + "..."


def expand(scope: str) -> frozenset[str]:
    """The atoms of one scope; :class:`ScopeError` naming it when it is not a scope we know."""
    if scope in API_SCOPES:
        return frozenset({scope})
    match = _SMART.match(scope)
    if match is None:
        raise ScopeError(f"unknown scope {_clip(scope)!r}: use orders.read, orders.write, admin or "
                         "system/<Type>.<cruds> (e.g. system/Task.rs, system/*.rs)")
    rtype, perms = match.groups()
    if rtype != "*" and rtype not in FHIR_TYPES:
        raise ScopeError(f"scope {scope!r}: {rtype} is not a resource type served here "
                         f"({', '.join(sorted(FHIR_TYPES))})")
    letters = _V1.get(perms, perms)
    if perms not in _V1 and (not set(letters) <= set(_LETTERS)
                             or letters != "".join(c for c in _LETTERS if c in letters)):
        raise ScopeError(f"scope {scope!r}: permissions are the letters c r u d s, each once and in that "
                         "order (or the SMART v1 forms read, write, *)")
    return frozenset(f"system/{rtype}.{letter}" for letter in letters)


def parse_scopes(text: str) -> tuple[list[str], frozenset[str]]:
    """A space-separated scope string -> (the scopes in order, duplicates dropped; their atoms)."""
    scopes = list(dict.fromkeys(part for part in text.split(" ") if part))
    if not scopes:
        raise ScopeError("no scope given")
    if len(scopes) > MAX_SCOPES:
        raise ScopeError(f"{len(scopes)} scopes: at most {MAX_SCOPES}")
    atoms: set[str] = set()
    for scope in scopes:
        atoms |= expand(scope)
    return scopes, frozenset(atoms)


def covers(atoms: frozenset[str], required: str) -> bool:
    """Whether the atoms grant ``required`` (an atom: ``orders.write``, ``system/Task.r``)."""
    if required in atoms:
        return True
    if required.startswith("system/"):
        letter = required.rsplit(".", 1)[1]
        return f"system/*.{letter}" in atoms
    return False


def role_allows(kind: str, atom: str) -> bool:
    """Whether a principal of role kind ``kind`` (manufacturer, site, admin) may hold ``atom``."""
    if atom == "orders.read":
        return True
    if atom == "orders.write":
        return kind == "manufacturer"
    if atom == "admin":
        return kind == "admin"
    rtype, letter = atom.removeprefix("system/").rsplit(".", 1)
    if letter in "rs":
        return True
    if rtype == "Subscription" and letter in "cd":
        return kind in ("site", "admin")
    return letter == "c" and kind == "site" and rtype in CREATE_TYPES


def check_role_allows(kind: str, scopes: Iterable[str]) -> None:
    """:class:`ScopeError` naming the first scope a ``kind`` role may not hold."""
    for scope in scopes:
        for atom in sorted(expand(scope)):
            if not role_allows(kind, atom):
                raise ScopeError(f"scope {scope!r} is not allowed for a {kind} role ({atom} is never granted "
                                 f"to a {kind})")


def scopes_supported() -> list[str]:
    """The scopes listed in the discovery document (wildcards and the concrete create scopes)."""
    return [*API_SCOPES, "system/*.rs", "system/*.r", "system/*.s",
            *(f"system/{t}.c" for t in CREATE_TYPES), *(f"system/{t}.rs" for t in RESOURCE_TYPES),
            "system/Subscription.crds", "system/Basic.rs"]


@dataclass(frozen=True)
class _FhirScope:
    letter: str

    def __call__(self, request: Request) -> str | None:
        rtype = request.path_params.get("resource_type", "")
        # a name no resource type has is answered 404 by the route; it is never echoed in a header
        return f"system/{rtype}.{self.letter}" if _TYPE_NAME.match(rtype) else None


def fhir_scope(letter: str) -> Callable[[Request], str | None]:
    """The required atom of a FHIR interaction on the path's ``{resource_type}``: ``r`` (read, vread,
    instance history), ``s`` (search, type history), ``c`` (create)."""
    assert letter in _LETTERS
    return _FhirScope(letter)
