"""Site profile loading: line numbers, every problem at once, content-hash version, demo profiles."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mappings.domain import OrderStatus
from mappings.profile.loader import (
    MAX_PROFILE_BYTES,
    MAX_PROFILE_NODES,
    ProfileInvalid,
    load_profile,
    load_profile_dir,
    load_profile_text,
)
from mappings.profile.schema import SiteProfile
from terminology import load_terminology

ROOT = Path(__file__).resolve().parents[2]
SITE_A = ROOT / "fixtures/profiles/site-a.yaml"
SITE_B = ROOT / "fixtures/profiles/site-b.yaml"

MINIMAL = """\
site_id: site-x
name: Site X
timezone: Europe/Berlin
organization_identifiers:
  - system: https://x.example.org/sid/org
    value: X
patient:
  mrn_system: https://x.example.org/sid/mrn
orders:
  placer_system: https://x.example.org/sid/placer
  filler_system: https://x.example.org/sid/filler
products:
  CART-CD19:
    local_code: X1
    display: CAR-T
    system: https://x.example.org/cs/orderables
"""


def _problems(text: str, name: str = "x.yaml") -> list[str]:
    with pytest.raises(ProfileInvalid) as caught:
        load_profile_text(text, name)
    return caught.value.problems


# ----------------------------------------------------------------------------- demo profiles


def test_site_a_is_fhir_first_with_full_demographics() -> None:
    profile = load_profile(SITE_A)
    assert profile.site_id == "site-a"
    assert profile.patient.demographics == "full"
    assert profile.measurement_codes == {} and profile.business_status.overrides == {}
    assert {"CART-CD19", "GT-HEM-01"} <= set(profile.products)
    assert profile.products["CART-CD19"].manufacturer == "acme-bio"
    assert profile.products["GT-HEM-01"].manufacturer == "nova-cell"
    hl7 = profile.hl7v2
    assert (hl7.enabled, hl7.version, hl7.order_message, hl7.results, hl7.scheduling, hl7.coi_location) == (
        True, "2.5.1", "OML^O21", True, True, "ORC-4")


def test_site_b_is_mrn_only_with_local_codes_for_everything() -> None:
    profile = load_profile(SITE_B)
    assert profile.site_id == "site-b"
    assert profile.patient.demographics == "mrn_only"
    assert {"CART-CD19", "GT-HEM-01"} <= set(profile.products)
    assert set(profile.measurement_codes) == set(load_terminology().measurement_codes())
    assert set(profile.business_status.overrides) == {s.value for s in OrderStatus}
    assert all(c.display for c in profile.business_status.overrides.values())
    hl7 = profile.hl7v2
    assert (hl7.enabled, hl7.version, hl7.order_message, hl7.results, hl7.scheduling, hl7.coi_location) == (
        True, "2.3", "ORM^O01", True, False, "ZCG")


def test_demo_profiles_differ_in_identifier_systems() -> None:
    a, b = load_profile(SITE_A), load_profile(SITE_B)
    assert a.patient.mrn_system != b.patient.mrn_system
    assert b.patient.mrn_system.startswith("urn:oid:")


def test_load_profile_dir_keys_by_site_id() -> None:
    profiles = load_profile_dir(ROOT / "fixtures/profiles")
    assert set(profiles) == {"site-a", "site-b"}
    assert profiles["site-a"] == load_profile(SITE_A)


def test_load_profile_dir_collects_problems_and_duplicate_site_ids(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(MINIMAL)
    (tmp_path / "b.yml").write_text(MINIMAL.replace("name: Site X", "name: Site X again"))
    (tmp_path / "c.yaml").write_text(MINIMAL.replace("timezone: Europe/Berlin", "timezone: Nowhere/Else"))
    with pytest.raises(ProfileInvalid) as caught:
        load_profile_dir(tmp_path)
    assert caught.value.problems == [
        f"{tmp_path / 'b.yml'}:1: site_id: 'site-x' is already used by {tmp_path / 'a.yaml'}",
        f"{tmp_path / 'c.yaml'}:3: timezone: unknown timezone 'Nowhere/Else' "
        "(expected an IANA name like Europe/Berlin)",
    ]


# ----------------------------------------------------------------------------- version


def test_version_is_the_content_hash_of_the_file() -> None:
    expected = "sha256:" + hashlib.sha256(SITE_A.read_bytes()).hexdigest()[:16]
    assert load_profile(SITE_A).version == expected
    assert load_profile(str(SITE_A)).version == expected
    assert load_profile_text(SITE_A.read_text(encoding="utf-8"), "site-a").version == expected


def test_any_change_changes_the_version() -> None:
    one = load_profile_text(MINIMAL)
    two = load_profile_text(MINIMAL + "# a comment\n")
    assert one.version != two.version
    assert one.model_copy(update={"version": ""}) == two.model_copy(update={"version": ""})


def test_version_may_not_be_written_in_the_file() -> None:
    assert _problems(MINIMAL + "version: v1\n") == [
        "x.yaml:17: version: set by the loader (content hash of the file); remove it from the profile"]


# ----------------------------------------------------------------------------- line numbers and messages


def test_every_problem_is_reported_at_once_sorted_by_line() -> None:
    text = (MINIMAL.replace("site_id: site-x", "site_id: Site X")
            .replace("    value: X", "    value: 7")
            .replace("  mrn_system: https://x.example.org/sid/mrn", "  mrn_system: mrn")
            + "colour: blue\n")
    assert _problems(text) == [
        "x.yaml:1: site_id: 'Site X' is not a site id (lowercase letters, digits and '-')",
        "x.yaml:6: organization_identifiers[0].value: input should be a valid string",
        "x.yaml:8: patient.mrn_system: 'mrn' is not an absolute URI "
        "(expected http(s)://..., urn:oid:<digits.dots> or urn:uuid:<uuid>)",
        "x.yaml:17: colour: unknown field (not allowed here)",
    ]


def test_missing_top_level_field_points_at_line_1() -> None:
    text = MINIMAL.replace("name: Site X\n", "")
    assert _problems(text) == ["x.yaml:1: name: field required"]


def test_missing_nested_field_points_at_its_parent() -> None:
    text = MINIMAL.replace("    display: CAR-T\n", "")
    assert _problems(text) == ["x.yaml:13: products.CART-CD19.display: field required"]


def test_second_list_item_gets_its_own_line() -> None:
    text = MINIMAL.replace("    value: X\n", "    value: X\n  - system: urn:oid:1.2.3\n    value: ''\n")
    assert _problems(text) == [
        "x.yaml:8: organization_identifiers[1].value: string should have at least 1 character"]


def test_messages_from_nested_sections_keep_their_path() -> None:
    text = MINIMAL + "hl7v2:\n  enabled: true\n  version: '2.6'\ndelivery:\n  retries: 3\n"
    assert _problems(text) == [
        "x.yaml:19: hl7v2.version: input should be '2.3', '2.4' or '2.5.1'",
        "x.yaml:21: delivery.retries: unknown field (not allowed here)",
    ]


def test_yaml_syntax_error_reports_the_line() -> None:
    assert _problems("site_id: a\nname: [unclosed\n") == [
        "x.yaml:3: (yaml): did not find expected ',' or ']'"]


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just text\n"])
def test_a_profile_must_be_a_mapping(text: str) -> None:
    problems = _problems(text)
    assert len(problems) == 1
    assert problems[0].endswith(": (root): a profile must be a YAML mapping of fields")


def test_duplicate_keys_are_reported_not_silently_overwritten() -> None:
    text = MINIMAL.replace("timezone: Europe/Berlin\n", "timezone: Europe/Berlin\ntimezone: Asia/Tokyo\n")
    assert _problems(text) == ["x.yaml:4: timezone: duplicate key (also on line 3)"]


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("Site X", "Site \xc9").encode("latin-1"))
    with pytest.raises(ProfileInvalid) as caught:
        load_profile(path)
    assert caught.value.problems == [f"{path}:1: (file): not UTF-8 text (invalid continuation byte)"]


def test_exception_message_lists_problems() -> None:
    with pytest.raises(ProfileInvalid) as caught:
        load_profile_text(MINIMAL.replace("name: Site X\n", ""), "x.yaml")
    assert caught.value.source == "x.yaml"
    assert str(caught.value) == "x.yaml: invalid site profile (1 problem)\nx.yaml:1: name: field required"
    assert isinstance(caught.value, ValueError)


def test_loader_module_can_be_imported_first() -> None:
    code = ("import mappings.profile.loader as l; p = l.load_profile('fixtures/profiles/site-a.yaml');"
            "import mappings.profile.schema as m; assert isinstance(p, m.SiteProfile)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_loaded_profile_equals_direct_validation() -> None:
    profile = load_profile_text(MINIMAL)
    assert profile == SiteProfile.model_validate(yaml.safe_load(MINIMAL)).model_copy(
        update={"version": profile.version})


# ----------------------------------------------------------------------------- hostile input (preview API)


def test_alias_bomb_is_refused_quickly() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    text = MINIMAL + "\n".join(levels) + "\n"
    assert _problems(text) == [
        f"x.yaml:21: (yaml): more than {MAX_PROFILE_NODES} values once aliases are expanded "
        "(profile_max_nodes)"]


def test_recursive_alias_is_refused() -> None:
    assert _problems(MINIMAL + "loop: &loop [*loop]\n") == [
        "x.yaml:17: (yaml): alias *loop refers to a node that contains it"]


def test_deep_nesting_is_refused() -> None:
    # deeper than Python's recursion limit lets PyYAML compose (about 2 frames a level)
    deep = MINIMAL + "deep: " + "[" * 800 + "]" * 800 + "\n"
    assert _problems(deep) == ["x.yaml:17: (yaml): nested more than 64 levels deep"]


def test_python_tags_are_not_constructed() -> None:
    assert _problems(MINIMAL + "name2: !!python/object/apply:os.system ['true']\n") == [
        "x.yaml:17: (yaml): could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'"]


def test_oversized_text_is_refused() -> None:
    assert _problems(MINIMAL + "#" * MAX_PROFILE_BYTES) == [
        f"x.yaml:1: (file): larger than {MAX_PROFILE_BYTES} bytes (profile_max_bytes)"]


def test_anchors_within_limits_are_fine() -> None:
    text = MINIMAL.replace("    system: https://x.example.org/cs/orderables",
                           "    system: &orderables https://x.example.org/cs/orderables")
    text += "  GT-HEM-01: {local_code: X2, display: Gene therapy, system: *orderables}\n"
    profile = load_profile_text(text)
    assert profile.products["GT-HEM-01"].system == "https://x.example.org/cs/orderables"
