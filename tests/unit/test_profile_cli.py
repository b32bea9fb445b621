"""`cgt-gateway profile validate` on the demo profiles and on broken ones, with the exact messages."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli.profile import profile_app
from mappings.profile.loader import profile_version

BROKEN = "fixtures/profiles/broken"
ROOT = Path(__file__).resolve().parents[2]

URI_HINT = "is not an absolute URI (expected http(s)://..., urn:oid:<digits.dots> or urn:uuid:<uuid>)"
MEASUREMENTS = ("tnc_count, cd3_count, cd34_count, viability_pct, viable_cd3_pct, car_positive_pct, "
                "volume_ml, vcn, sterility, endotoxin_eu_ml, mycoplasma, shipper_temperature")
STATUSES = ("placed, confirmed, apheresis_scheduled, collected, manufacturing, manufactured, released, "
            "shipped, received, infusion_scheduled, infused, on_hold, cancelled, failed")


@pytest.fixture(autouse=True)
def _in_repo_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)  # messages carry the path as given on the command line


def _validate(*paths: str) -> tuple[int, list[str], list[str]]:
    result = CliRunner().invoke(profile_app, ["validate", *paths])
    return result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()


def test_demo_profiles_are_ok_with_their_content_hash() -> None:
    code, out, err = _validate("fixtures/profiles/site-a.yaml", "fixtures/profiles/site-b.yaml")
    assert code == 0, err
    assert err == []
    for line, name in zip(out, ("site-a", "site-b"), strict=True):
        version = profile_version((ROOT / f"fixtures/profiles/{name}.yaml").read_bytes())
        assert line == f"fixtures/profiles/{name}.yaml: ok (version {version})"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing", ["fixtures/profiles/broken/missing.yaml:3: patient.mrn_system: field required"]),
        ("wrong-type", [
            "fixtures/profiles/broken/wrong-type.yaml:4: organization_identifiers: "
            "input should be a valid list",
            "fixtures/profiles/broken/wrong-type.yaml:9: patient.demographics: "
            "input should be 'full' or 'mrn_only'",
            "fixtures/profiles/broken/wrong-type.yaml:16: hl7v2.enabled: "
            "input should be a valid boolean, unable to interpret input",
        ]),
        ("unknown-code", [
            "fixtures/profiles/broken/unknown-code.yaml:15: measurement_codes.cd19_count: "
            f"unknown measurement code 'cd19_count'; expected one of: {MEASUREMENTS}",
            "fixtures/profiles/broken/unknown-code.yaml:18: business_status.overrides.delivered: "
            f"unknown business status 'delivered'; expected one of: {STATUSES}",
        ]),
        ("bad-system", [
            "fixtures/profiles/broken/bad-system.yaml:5: organization_identifiers[0].system: "
            f"'BROKEN-ORG' {URI_HINT}",
            f"fixtures/profiles/broken/bad-system.yaml:8: patient.mrn_system: 'urn:oid:1.2.x' {URI_HINT}",
            "fixtures/profiles/broken/bad-system.yaml:11: orders.filler_system: "
            f"'ftp://broken.example.org/sid/filler' {URI_HINT}",
        ]),
        ("bad-timezone", [
            "fixtures/profiles/broken/bad-timezone.yaml:3: timezone: "
            "unknown timezone 'Europe/Atlantis' (expected an IANA name like Europe/Berlin)",
        ]),
        ("syntax", [
            "fixtures/profiles/broken/syntax.yaml:6: (yaml): "
            "mapping values are not allowed in this context"]),
        ("duplicate-key", [
            "fixtures/profiles/broken/duplicate-key.yaml:14: products.CART-CD19: "
            "duplicate key (also on line 13)",
        ]),
    ],
)
def test_broken_profile_prints_every_problem_and_exits_1(name: str, expected: list[str]) -> None:
    code, out, err = _validate(f"{BROKEN}/{name}.yaml")
    assert code == 1
    assert out == []
    assert err == [*expected, "1 of 1 profile(s) invalid"]


def test_mixed_good_and_bad_reports_both_and_fails() -> None:
    code, out, err = _validate("fixtures/profiles/site-a.yaml", f"{BROKEN}/missing.yaml")
    assert code == 1
    assert len(out) == 1 and out[0].startswith("fixtures/profiles/site-a.yaml: ok (version sha256:")
    assert err == ["fixtures/profiles/broken/missing.yaml:3: patient.mrn_system: field required",
                   "1 of 2 profile(s) invalid"]


def test_directory_validates_every_yaml_inside() -> None:
    code, out, err = _validate(BROKEN)
    assert code == 1
    assert out == []
    assert err[-1] == "7 of 7 profile(s) invalid"


def test_missing_file_is_a_problem_not_a_traceback() -> None:
    code, out, err = _validate("fixtures/profiles/nope.yaml")
    assert code == 1
    assert err == ["fixtures/profiles/nope.yaml:1: (file): cannot read: No such file or directory",
                   "1 of 1 profile(s) invalid"]


def test_empty_directory_fails(tmp_path: Path) -> None:
    code, _, err = _validate(str(tmp_path))
    assert code == 1
    assert err == ["no profile files found"]


def test_validate_applies_the_configured_limits(tmp_path: Path) -> None:
    """Issue 11: `profile validate` holds a profile to the same limits as start-up and preview."""
    config = tmp_path / "gateway.yaml"
    config.write_text("profile_max_bytes: 1000\ntemplate_max_range: 3\n", encoding="utf-8")
    code, _, err = _validate("fixtures/profiles/site-a.yaml", "--config", str(config))
    assert code == 1
    assert err[0] == "fixtures/profiles/site-a.yaml:1: (file): larger than 1000 bytes (profile_max_bytes)"
    draft = tmp_path / "draft.yaml"
    draft.write_text((ROOT / "fixtures/profiles/site-a.yaml").read_text(encoding="utf-8")
                     + "  overrides:\n    OBR-4: \"{{ range(4) | join }}\"\n", encoding="utf-8")
    config.write_text("template_max_range: 3\n", encoding="utf-8")
    code, _, err = _validate(str(draft), "--config", str(config))
    assert code == 1 and "(rule template-range)" in err[0]
    code, out, _ = _validate(str(draft))
    assert code == 0 and out[0].startswith(f"{draft}: ok")
