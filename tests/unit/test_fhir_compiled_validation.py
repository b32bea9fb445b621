"""The compiled validator (``mappings.fhir.compiled_validation``) must give exactly the R4B answer.

Differential: every resource the builders produce for every fixture journey of both demo sites goes
through the fast path (after its shape is learned) and comes out byte-equal to the bare R4B
``model_validate`` + ``model_dump``.  Property: those resources with a leaf mutated (strings with
whitespace, unicode, bad dates and codes, numbers, floats like 3.0, bools, nulls), a key dropped or
an unknown key added, are either rejected by both or dumped to the same bytes; counters prove the
fast path was really taken, and really rejected bad leaves of a known shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mappings.fhir.model as fhir_model
from gateway.cli.goldens import CASES, FIXTURES, GOLDEN_NOW, SITES, load_case
from gateway.config import load_settings
from gateway.intake.replay import preview_order
from mappings.fhir import compiled_validation as compiled
from mappings.fhir.model import validated
from mappings.profile.loader import load_profile
from terminology import load_terminology

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "gateway" / "demo" / "gateway.yaml"


def _builder_inputs() -> list[bytes]:
    """The JSON content of every resource handed to ``validated`` by the fixture journeys."""
    seen: dict[bytes, None] = {}
    original = fhir_model._validated_json

    def spy(content: bytes) -> bytes:
        seen[content] = None
        return original(content)

    mp = pytest.MonkeyPatch()
    mp.setattr(fhir_model, "_validated_json", spy)
    try:
        for site_id in SITES:
            for case_name in CASES:
                case = load_case(FIXTURES / "events" / f"{case_name}.json").for_site(site_id)
                profile = load_profile(FIXTURES / "profiles" / f"{site_id}.yaml")
                preview_order(load_settings(DEMO_CONFIG), profile, case.order, case.events,
                              load_terminology(), now=GOLDEN_NOW, placed_at=case.placed_at)
    finally:
        mp.undo()
    return list(seen)


INPUTS = _builder_inputs()


def _r4b(resource: dict[str, Any]) -> tuple[str, Any]:
    """The bare R4B answer: ("ok", dump bytes) or ("error", exception type name)."""
    try:
        model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        return "ok", orjson.dumps(model.model_dump(mode="json", exclude_none=True))
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return "error", type(exc).__name__


def _gateway(resource: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "ok", orjson.dumps(validated(resource))
    except Exception as exc:  # noqa: BLE001
        return "error", type(exc).__name__


def test_fixture_journeys_feed_many_resource_types() -> None:
    types = {orjson.loads(content)["resourceType"] for content in INPUTS}
    assert {"Task", "Observation", "Provenance", "Bundle", "Patient", "ServiceRequest"} <= types
    assert len(INPUTS) > 50


def test_every_fixture_resource_takes_the_fast_path_byte_equal_to_r4b() -> None:
    compiled.reset()
    for content in INPUTS:
        status, expected = _r4b(orjson.loads(content))
        assert status == "ok"
        assert orjson.dumps(compiled.full_validate(orjson.loads(content))) == expected
        assert compiled.has_plan(orjson.loads(content)), orjson.loads(content)["resourceType"]
        fast = compiled.compiled_dump(orjson.loads(content), content)
        assert fast == expected
    assert compiled.stats().fast == len(INPUTS)
    assert compiled.stats().not_compilable == 0


def _reversed_keys(node: Any) -> Any:
    if isinstance(node, dict):
        return {key: _reversed_keys(node[key]) for key in reversed(node)}
    if isinstance(node, list):
        return [_reversed_keys(item) for item in node]
    return node


def test_builders_emit_keys_in_r4b_order() -> None:
    """Not needed for correctness (see the next test), but it keeps the fast path at its cheapest."""
    assert [c for c in INPUTS if _r4b(orjson.loads(c))[1] != c] == []


def test_other_key_orders_are_reordered_to_r4b_order() -> None:
    compiled.reset()
    for content in INPUTS:
        shuffled = orjson.dumps(_reversed_keys(orjson.loads(content)))
        compiled.full_validate(orjson.loads(shuffled))
        fast = compiled.compiled_dump(orjson.loads(shuffled), shuffled)
        assert fast == _r4b(orjson.loads(content))[1]
    assert compiled.stats().fast == len(INPUTS)


def test_same_shape_new_values_use_the_plan_and_bad_values_fall_back() -> None:
    compiled.reset()
    task = next(orjson.loads(c) for c in INPUTS if orjson.loads(c)["resourceType"] == "Task")
    compiled.full_validate(task)
    for field, value, valid in [
        ("authoredOn", "2027-03-04T05:06:07Z", True),
        ("authoredOn", "2027-03-04T05:06:07+02:00", True),
        ("authoredOn", "2026-02-30", False),
        ("authoredOn", "2026-01-05T25:00:00Z", False),
        ("authoredOn", "2026-01-05T14:30:00.123Z", None),  # valid, but R4B dumps .123000Z
        ("status", "a  b", False),
        ("status", " requested", False),
        ("id", "bad id!", False),
        ("id", "x" * 256, False),  # fhir_core allows 255
        ("id", "ok-id.2", True),
    ]:
        mutated = {**task, field: value}
        content = orjson.dumps(mutated)
        assert compiled.has_plan(mutated)
        fast = compiled.compiled_dump(orjson.loads(content), content)
        expected = _r4b(mutated)
        if valid:
            assert expected[0] == "ok" and fast == expected[1], (field, value)
        else:
            assert fast is None, (field, value)
            if valid is False:
                assert expected == ("error", "ValidationError"), (field, value)
            assert _gateway(mutated) == expected


def test_decimal_float_and_int_leaves() -> None:
    compiled.reset()
    observations = [orjson.loads(c) for c in INPUTS if b'"valueQuantity"' in c and b'"Observation"' in c]
    assert observations
    observation = observations[0]
    compiled.full_validate(observation)
    fast_answers = 0
    for value in (3, 3.0, 2.5, -0.0, 0, 1e20, 2**63 - 1, True):
        mutated = {**observation, "valueQuantity": {**observation["valueQuantity"], "value": value}}
        content = orjson.dumps(mutated)
        fast = compiled.compiled_dump(orjson.loads(content), content)
        expected = _r4b(mutated)
        if fast is not None:
            fast_answers += 1
            assert ("ok", fast) == expected, value
        assert _gateway(mutated) == expected, value  # learns the int-valued shape too
    assert fast_answers >= 3


_SPECIAL = st.sampled_from([
    "", " ", "a  b", " a", "a ", "\t", "\n", "é", "ünïcødé ✓", "2026-02-30", "2026-01-05T25:00:00Z",
    "2026-01-05", "2026-01", "2026", "2026-13", "2026-01-05T14:30:00Z", "2026-01-05T14:30:00.123Z",
    "2026-01-05T14:30:00+14:00", "2026-01-05T14:30:00", "bad id!", "urn:uuid:1", "http://x y", "final",
    "requested", "x" * 65, 3.0, 3, 0, -1, 2.5, 1e308, True, False, None,
])
_VALUES = st.one_of(_SPECIAL, st.text(max_size=12), st.integers(-(2**63), 2**64 - 1),
                    st.floats(allow_nan=False), st.booleans(), st.none(),
                    st.lists(st.text(max_size=4), max_size=2))


def _positions(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.append((*path, key))
        out.extend(_positions(value, (*path, key)))
    return out


def _dicts(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path] if isinstance(node, dict) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        out.extend(_dicts(value, (*path, key)))
    return out


def _at(node: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def _mutated(draw: st.DrawFn) -> dict[str, Any]:
    resource = orjson.loads(draw(st.sampled_from(INPUTS)))
    kind = draw(st.sampled_from(["leaf", "leaf", "replace", "replace", "drop", "add"]))
    if kind == "add":
        parent = _at(resource, draw(st.sampled_from(_dicts(resource))))
        parent[draw(st.sampled_from(["unknownKey", "_status", "fhir_comments", "extension"]))] = draw(_VALUES)
        return resource
    positions = _positions(resource)
    if kind == "leaf":  # a string leaf, so that the shape is usually kept
        positions = [p for p in positions if isinstance(_at(resource, p), str)]
    *parent_path, key = draw(st.sampled_from(positions))
    parent = _at(resource, tuple(parent_path))
    if kind == "drop":
        del parent[key]
    else:
        current = parent[key]
        if isinstance(current, str) and draw(st.integers(0, 2)):  # same JSON type: the shape is kept
            variants = st.sampled_from([current + " ", " " + current, current.upper(), current + "x",
                                        current[:-1], current + "\u00e9", current.replace("-", "  ")])
            parent[key] = draw(st.one_of(variants, _SPECIAL.filter(lambda v: isinstance(v, str)),
                                         st.text(max_size=12)))
        else:
            parent[key] = draw(_VALUES)
    return resource


def test_mutated_resources_get_the_r4b_answer() -> None:
    compiled.reset()
    for content in INPUTS:  # learn every fixture shape first, so mutants of a known shape exist
        compiled.full_validate(orjson.loads(content))
    counts = {"fast": 0, "rejected": 0}

    @settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_mutated())
    def check(resource: dict[str, Any]) -> None:
        content = orjson.dumps(resource)
        expected = _r4b(orjson.loads(content))
        known = compiled.has_plan(orjson.loads(content))
        fast = compiled.compiled_dump(orjson.loads(content), content)
        if fast is not None:
            counts["fast"] += 1
            assert ("ok", fast) == expected
        elif known:
            counts["rejected"] += 1
        assert _gateway(orjson.loads(content)) == expected

    check()
    assert counts["fast"] >= 50, counts  # the fast path really answered (valid mutants)...
    assert counts["rejected"] >= 10, counts  # ...and really refused bad leaves of a known shape


def test_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled.reset()
    monkeypatch.setattr(compiled, "MAX_SHAPES", 5)
    monkeypatch.setattr(compiled, "MAX_STRINGS_PER_LEAF", 3)
    for content in INPUTS:
        compiled.full_validate(orjson.loads(content))
        compiled.compiled_dump(orjson.loads(content), content)
        assert len(compiled._plans) <= 5
    organization = {"resourceType": "Organization", "id": "o-0", "name": "Org 0"}
    compiled.full_validate(organization)
    for n in range(10):
        renamed = {**organization, "name": f"Org {n}"}
        assert compiled.compiled_dump(renamed, orjson.dumps(renamed)) == orjson.dumps(renamed)
    assert all(len(leaf.strings) <= 3 for leaf in compiled._leaves_by_field.values())


def test_primitive_extensions_and_comments_are_left_to_r4b() -> None:
    compiled.reset()
    task = next(orjson.loads(c) for c in INPUTS if orjson.loads(c)["resourceType"] == "Task")
    for extra in ({"_status": {"extension": [{"url": "http://x", "valueString": "y"}]}},
                  {"fhir_comments": ["a comment"]}):
        resource = {**task, **extra}
        assert _gateway(resource) == _r4b(resource)
        assert not compiled.has_plan(resource)


def test_resources_stamped_with_a_millisecond_clock_take_the_fast_path() -> None:
    """The server clock has a fraction; ``fhir_instant`` writes it as R4B dumps it (``.250000Z``),
    so a second order of the same journey is validated by the plans, byte-equal to R4B."""
    from datetime import timedelta

    now = GOLDEN_NOW.replace(microsecond=250_999)
    case = load_case(FIXTURES / "events" / "journey-autologous.json").for_site("site-a")
    profile = load_profile(FIXTURES / "profiles" / "site-a.yaml")
    seen: list[bytes] = []
    original = fhir_model._validated_json

    def spy(content: bytes) -> bytes:
        seen.append(content)
        return original(content)

    compiled.reset()
    fhir_model._validated_json.cache_clear()
    mp = pytest.MonkeyPatch()
    mp.setattr(fhir_model, "_validated_json", spy)
    try:
        for offset in (0, 1):  # the second order differs in every clock stamp, not in shape
            moment = now + timedelta(seconds=offset, milliseconds=offset)
            preview_order(load_settings(DEMO_CONFIG), profile, case.order, case.events, load_terminology(),
                          now=moment, placed_at=moment)
            if offset == 0:
                full_after_first = compiled.stats().full
    finally:
        mp.undo()
    assert any(b".250000Z" in content for content in seen)
    assert compiled.stats().full == full_after_first  # nothing new went the slow way
    assert compiled.stats().fast > 0
    for content in seen:
        assert _gateway(orjson.loads(content)) == _r4b(orjson.loads(content))
