"""A validator compiled from the R4B models that gives the same answer as them, much faster.

Why it is sound: ``fhir_core``'s model-level checks look only at the *shape* of a resource (which
keys are present and in what order, list lengths, nulls, the ``resourceType`` that picks a model),
never at a primitive's value: required elements, one-of-many choice types, no null in a list of
complex elements, no unknown key.  Values are checked leaf by leaf, each by the validator of its
field's primitive type (``fhir_core.types``: Code, Id, DateTime, Decimal, Uri, String...), and a
primitive is dumped by ``_serialize_primitive_value`` then JSON-encoded, independently of the rest.

So a resource is walked once into a hashable shape key and its primitive leaves in order.  The
first resource of a shape goes through the full R4B ``model_validate`` + ``model_dump``; when that
passes and the dump is the input byte for byte (same JSON, same key order), a *plan* is derived by
walking the validated model beside the dict: for each leaf, its field's own pydantic validator
(a ``TypeAdapter`` of the field's annotation and metadata, under the model's config).  A later
resource of the same shape passes when each leaf validates and re-serializes to exactly the input
leaf (same type, same value); its R4B dump is then the input itself.  Anything else (new shape,
a leaf that fails or would change, a model class with validators or serializers of its own)
goes through the full R4B path, which raises the R4B ``ValidationError`` for invalid content.

**What it buys** (``bench/RESULTS.md``): the pure translation at 1,032 events/s on one core (329
before; 16 times the bare fhir.resources validate + dump), every resource still validated.
**Interface:** only :mod:`mappings.fhir.model` (``validated`` and the dump helpers) calls it; every
builder goes through that module (an import-linter ``protected`` contract).  **Equivalence is
guarded by** ``tests/unit/test_fhir_compiled_validation.py`` (differential tests on every fixture
resource and on mutated ones, and a Hypothesis property: byte-equal to R4B, same errors) and
``tests/unit/test_fhir_validated_cache.py``.  ``fhir-core`` is imported directly: its upgrades
are pinned ``<2`` in pyproject.toml and go through those tests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import Annotated, Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from fhir_core.fhirabstractmodel import FHIRAbstractModel
from fhir_core.utils import is_primitive_type
from pydantic import TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import to_jsonable_python

__all__ = ["CompiledStats", "compiled_dump", "full_validate", "has_plan", "reset", "stats"]

#: Shapes whose plan (or "not compilable") is kept; string results memoised per leaf.  Bounded.
MAX_SHAPES = 2048
MAX_STRINGS_PER_LEAF = 256

_RT = object()  # token: a scalar ``resourceType`` (it selects a model, so its value is shape)
_LIST = object()  # token: a list of JSON objects, followed by its length
_SCALARS = object()  # token: a list holding a non-object (a leaf), with its element types

_ABSTRACT_VALIDATORS = frozenset({"reject_null_complex_elements", "validate_after_model_construction"})
_ABSTRACT_SERIALIZERS = frozenset({"fhir_model_serializer"})
#: FHIRAbstractModel behaviour the soundness argument relies on; no subclass may override it.
_GUARDED = frozenset({
    "__init__", "model_validate", "model_dump", "_fhir_iter", "_serialize_primitive_value",
    "_serialize_non_primitive_value", "reject_null_complex_elements",
    "validate_after_model_construction", "_validate_one_of_many",
    "_validate_required_primitive_elements", "fhir_model_serializer", "model_post_init",
}) | _ABSTRACT_VALIDATORS
_SERIALIZER = FHIRAbstractModel.model_construct()  # only its ``_serialize_primitive_value`` is used


@dataclass
class CompiledStats:
    """Counters, for tests and profiling: how each resource was validated."""

    fast: int = 0
    full: int = 0
    compiled: int = 0
    not_compilable: int = 0


@dataclass(frozen=True, eq=False)
class _Leaf:
    """How one primitive leaf is checked: its field's R4B validator and serialization."""

    validate: Callable[[Any], Any]
    field: FieldInfo
    strings: dict[str, bool] = dataclass_field(default_factory=dict)  # memo: string value -> passes


@dataclass(frozen=True)
class _Plan:
    """A compiled shape: a checker per leaf, and each object's key order in R4B's dump (or None
    when the dump keeps the input's order everywhere)."""

    leaves: tuple[_Leaf, ...]
    orders: tuple[tuple[str, ...] | None, ...] | None


_stats = CompiledStats()
_plans: dict[tuple[Any, ...], _Plan | None] = {}
_leaves_by_field: dict[tuple[type, str], _Leaf] = {}
_plain_classes: dict[type, bool] = {}
_learning = threading.Lock()


def stats() -> CompiledStats:
    return _stats


def reset() -> None:
    """Forget every plan and memoised leaf, and zero the counters (tests)."""
    _plans.clear()
    for leaf in _leaves_by_field.values():
        leaf.strings.clear()
    _stats.fast = _stats.full = _stats.compiled = _stats.not_compilable = 0


def has_plan(resource: dict[str, Any]) -> bool:
    """True when ``resource``'s shape has a compiled plan (its leaves decide the fast path)."""
    tokens: list[Any] = []
    _walk(resource, tokens, [])
    return _plans.get(tuple(tokens)) is not None


def compiled_dump(resource: dict[str, Any], content: bytes) -> bytes | None:
    """The R4B dump of ``resource`` (whose ``orjson`` bytes are ``content``) as JSON bytes, when its
    shape has a plan and every leaf passes; None means "not proven here": use :func:`full_validate`.

    ``resource`` must be plain JSON (as ``orjson.loads`` returns it); it may be reordered in place.
    """
    tokens: list[Any] = []
    leaves: list[Any] = []
    _walk(resource, tokens, leaves)
    plan = _plans.get(tuple(tokens))
    if plan is None:
        return None
    for leaf, value in zip(plan.leaves, leaves, strict=True):
        if type(value) is str:  # most leaves: memoised per leaf
            passed = leaf.strings.get(value)
            if passed is None:
                passed = _leaf_ok(leaf, value)
                if len(leaf.strings) >= MAX_STRINGS_PER_LEAF:
                    leaf.strings.clear()
                leaf.strings[value] = passed
        else:
            passed = _leaf_ok(leaf, value)
        if not passed:
            return None
    _stats.fast += 1
    if plan.orders is None:
        return content
    return orjson.dumps(_reorder(resource, iter(plan.orders)))


def full_validate(resource: dict[str, Any], *, learn: bool = True) -> dict[str, Any]:
    """The R4B path (``model_validate`` + ``model_dump``).  With ``learn`` (``resource`` must then be
    plain JSON, as ``orjson.loads`` returns it), a plan is compiled for the resource's shape when the
    dump is the input, byte for byte once keys are sorted.  Raises ``pydantic.ValidationError`` for
    invalid content."""
    _stats.full += 1
    model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    dumped: dict[str, Any] = model.model_dump(mode="json", exclude_none=True)
    if not learn:
        return dumped
    tokens: list[Any] = []
    leaves: list[Any] = []
    _walk(resource, tokens, leaves)
    shape = tuple(tokens)
    if shape not in _plans and (orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)
                                == orjson.dumps(resource, option=orjson.OPT_SORT_KEYS)):
        _learn(shape, model, resource, leaves, dumped)
    return dumped


def _walk(node: dict[str, Any], tokens: list[Any], leaves: list[Any]) -> None:
    """Append ``node``'s shape tokens and primitive leaves (in key order, depth first)."""
    tokens.append(tuple(node))
    for key, value in node.items():
        kind = type(value)
        if kind is dict:
            _walk(value, tokens, leaves)
        elif kind is list and value and all(type(item) is dict for item in value):
            tokens.append(_LIST)
            tokens.append(len(value))
            for item in value:
                _walk(item, tokens, leaves)
        elif kind is list:
            tokens.append(_SCALARS)
            tokens.append(tuple(type(item) for item in value))
            leaves.append(value)
        elif key == "resourceType":
            tokens.append((_RT, kind, value))
        else:
            tokens.append(kind)
            leaves.append(value)


def _learn(shape: tuple[Any, ...], model: FHIRAbstractModel, resource: dict[str, Any],
           leaves: list[Any], dumped: dict[str, Any]) -> None:
    leaf_plan: list[_Leaf] = []
    values: list[Any] = []
    compiled = _plan(model, resource, leaf_plan, values)
    compiled = compiled and len(values) == len(leaves) and all(
        a is b for a, b in zip(values, leaves, strict=True))
    compiled = compiled and all(_leaf_ok(leaf, value) for leaf, value in zip(leaf_plan, leaves, strict=True))
    orders: list[tuple[str, ...] | None] = []
    _orders(resource, dumped, orders)
    plan = _Plan(tuple(leaf_plan), tuple(orders) if any(orders) else None)
    if compiled and plan.orders is not None:  # the reordering must give R4B's bytes exactly
        copy = orjson.loads(orjson.dumps(resource))
        compiled = orjson.dumps(_reorder(copy, iter(plan.orders))) == orjson.dumps(dumped)
    with _learning:  # request threads may learn at once; readers need no lock
        while len(_plans) >= MAX_SHAPES:
            del _plans[next(iter(_plans))]
        _plans[shape] = plan if compiled else None
    if compiled:
        _stats.compiled += 1
    else:
        _stats.not_compilable += 1


def _orders(node: dict[str, Any], dumped: dict[str, Any], out: list[tuple[str, ...] | None]) -> None:
    """Each object's key order in R4B's dump (None: as in the input), in :func:`_walk`'s order."""
    out.append(None if list(node) == list(dumped) else tuple(dumped))
    for key, value in node.items():
        if type(value) is dict:
            _orders(value, dumped[key], out)
        elif type(value) is list and value and all(type(item) is dict for item in value):
            for item, dumped_item in zip(value, dumped[key], strict=True):
                _orders(item, dumped_item, out)


def _reorder(node: dict[str, Any], orders: Iterator[tuple[str, ...] | None]) -> dict[str, Any]:
    order = next(orders)
    for key, value in node.items():
        if type(value) is dict:
            node[key] = _reorder(value, orders)
        elif type(value) is list and value and all(type(item) is dict for item in value):
            value[:] = [_reorder(item, orders) for item in value]
    return node if order is None else {key: node[key] for key in order}


def _is_leaf(value: Any) -> bool:
    """The same rule as :func:`_walk`: a scalar, or a list that is not a non-empty list of objects."""
    if type(value) is dict:
        return False
    return not (type(value) is list and value and all(type(item) is dict for item in value))


def _plan(model: Any, node: dict[str, Any], plan: list[_Leaf], values: list[Any]) -> bool:
    """Walk the validated ``model`` beside ``node`` (as :func:`_walk` does) and append each
    leaf's checker; False when anything falls outside what the plan can prove."""
    cls = type(model)
    if not isinstance(model, FHIRAbstractModel) or not _plain(cls):
        return False
    names = cls.get_alias_mapping()
    for key, value in node.items():
        if key == "resourceType" and _is_leaf(value) and type(value) is not list:
            if not (cls.has_resource_base() and value == cls.get_resource_type()):
                return False
            continue
        name = names.get(key)
        if name is None:
            return False  # primitive extensions (``_x``), ``fhir_comments``: not compiled
        field = cls.model_fields[name]
        if is_primitive_type(field):
            if not _is_leaf(value):
                return False
            plan.append(_leaf_for(cls, name, field))
            values.append(value)
            continue
        sub = getattr(model, name)
        if type(value) is dict:
            if not _plan(sub, value, plan, values):
                return False
        elif _is_leaf(value) or not isinstance(sub, list) or len(sub) != len(value):
            return False
        else:
            for sub_item, item in zip(sub, value, strict=True):
                if not _plan(sub_item, item, plan, values):
                    return False
    return True


def _plain(cls: type) -> bool:
    """True when ``cls`` validates and dumps only through FHIRAbstractModel's own code."""
    known = _plain_classes.get(cls)
    if known is None:
        decorators = cls.__pydantic_decorators__  # type: ignore[attr-defined]
        known = (
            set(decorators.model_validators) == _ABSTRACT_VALIDATORS
            and set(decorators.model_serializers) == _ABSTRACT_SERIALIZERS
            and not (decorators.validators or decorators.field_validators
                     or decorators.root_validators or decorators.field_serializers
                     or decorators.computed_fields)
            and not any(
                name in klass.__dict__
                for klass in cls.__mro__[: cls.__mro__.index(FHIRAbstractModel)]
                for name in _GUARDED
            )
        )
        _plain_classes[cls] = known
    return known


def _leaf_for(cls: type, name: str, field: FieldInfo) -> _Leaf:
    leaf = _leaves_by_field.get((cls, name))
    if leaf is None:
        annotation: Any = field.annotation
        if field.metadata:
            annotation = Annotated[(annotation, *field.metadata)]
        adapter: TypeAdapter[Any] = TypeAdapter(annotation, config=cls.model_config)  # type: ignore[attr-defined]
        leaf = _Leaf(adapter.validate_python, field)
        _leaves_by_field[(cls, name)] = leaf
    return leaf


def _leaf_ok(leaf: _Leaf, value: Any) -> bool:
    """The leaf is valid for its field and R4B would dump it unchanged (same JSON type and value)."""
    try:
        python = leaf.validate(value)
        dumped = to_jsonable_python(_SERIALIZER._serialize_primitive_value(python, leaf.field))
    except Exception:  # any doubt: the full R4B path decides, and raises what R4B raises
        return False
    return _same(dumped, value)


def _same(dumped: Any, value: Any) -> bool:
    if type(dumped) is not type(value):
        return False
    if type(value) is list:
        return len(dumped) == len(value) and all(_same(a, b) for a, b in zip(dumped, value, strict=True))
    if type(value) is float:
        return repr(dumped) == repr(value)  # -0.0 is not 0.0 in JSON
    return bool(dumped == value)
