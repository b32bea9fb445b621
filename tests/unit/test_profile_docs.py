"""docs/profiles.md agrees with the schema and the renderer: its generated blocks are what
``gateway.cli.profile_docs`` renders now, and its hand-written YAML examples are valid profile parts."""

from __future__ import annotations

import re
import textwrap
from typing import Any

import pytest
import yaml

from gateway.cli import profile_docs
from gateway.cli.profile_docs import DESCRIPTIONS, DOC, EXAMPLE, render_blocks, replace_blocks, schema_keys
from mappings.profile.schema import SiteProfile


@pytest.fixture(scope="module")
def blocks() -> dict[str, str]:
    return render_blocks(profile_docs.preview_steps())


def test_the_generated_parts_are_up_to_date(blocks):
    current = DOC.read_text(encoding="utf-8")
    assert replace_blocks(current, blocks) == current, (
        "docs/profiles.md is out of date: run `python -m gateway.cli.profile_docs` "
        "(or `cgt-gateway profile docs`)")


def test_every_schema_key_is_in_the_reference_with_type_default_and_allowed_values(blocks):
    table = blocks["keys"]
    for key in schema_keys():
        assert f"| `{key.path}` |" in table, key.path
    assert set(DESCRIPTIONS) == {key.path for key in schema_keys()}
    row = next(line for line in table.splitlines() if line.startswith("| `hl7v2.coi_location` |"))
    assert "`ORC-4`" in row and "one of `ORC-4`, `OBX`, `ZCG`" in row
    row = next(line for line in table.splitlines() if line.startswith("| `delivery.mllp.read_timeout_s` |"))
    assert "`30.0`" in row and "> 0" in row and "≤ 600" in row
    for name in ("order_message", "ack_mode", "processing_id", "charset"):
        assert f"| `hl7v2.{name}` |" in table


def test_a_new_schema_key_without_a_description_fails(monkeypatch):
    monkeypatch.delitem(DESCRIPTIONS, "hl7v2.coi_location")
    with pytest.raises(ValueError, match="no description for \\['hl7v2.coi_location'\\]"):
        profile_docs.render_keys()


def test_the_coi_renderings_come_from_the_renderer(blocks):
    placed = {name: blocks[f"coi-{name}"].splitlines() for name in ("ORC-4", "OBX", "ZCG")}
    orc = {name: next(s for s in lines if s.startswith("ORC|")).split("|") for name, lines in placed.items()}
    assert orc["ORC-4"][4].endswith("^ISBT128") and orc["OBX"][4] == "" and orc["ZCG"][4] == ""
    assert any(s.startswith("OBX|") and "^Chain of Identity identifier^" in s for s in placed["OBX"])
    assert any(s.startswith("ZCG|") for s in placed["ZCG"])
    golden_path = EXAMPLE.parents[1] / "expected" / "site-a" / "journey-autologous.hl7"
    golden = golden_path.read_text(encoding="utf-8")
    assert "\n".join(placed["ORC-4"][1:-1]) in golden  # site-a's own placement is its golden


def test_the_emission_table_has_every_event_type_and_version(blocks):
    from mappings.domain import EventType

    table = blocks["emits"]
    for event_type in EventType:
        assert f"| `{event_type.value}` |" in table
    assert "| Event | 2.3 ORM | 2.4 ORM | 2.4 OML | 2.5.1 ORM | 2.5.1 OML |" in table
    assert "ORU^R01 RE (results)" in table and "SIU^S12 (scheduling)" in table


def _merge(base: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in part.items():
        nested = isinstance(value, dict) and isinstance(base.get(key), dict)
        merged[key] = _merge(base[key], value) if nested else value
    return merged


def test_the_hand_written_yaml_examples_are_valid_profile_parts():
    text = DOC.read_text(encoding="utf-8")
    generated = r"<!-- BEGIN GENERATED: .*? -->.*?<!-- END GENERATED: .*? -->"
    hand_written = re.sub(generated, "", text, flags=re.S)
    snippets = re.findall(r"```yaml\n(.*?)```", hand_written, flags=re.S)
    base = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    checked = 0
    for snippet in snippets:
        part = yaml.safe_load(textwrap.dedent(snippet))
        if "sites" in part:  # the configuration's entry for the site, not a profile part
            continue
        SiteProfile.model_validate(_merge(base, part))
        checked += 1
    assert checked >= 3
