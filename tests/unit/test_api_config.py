"""Settings: YAML + env overrides, demo names, references checked, tokens hashed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from gateway.config import DEMO_CONFIG, hash_token, load_settings, parse_role


def test_demo_configuration_has_the_documented_names():
    s = load_settings(DEMO_CONFIG)
    assert (s.host, s.port, s.max_body_bytes) == ("127.0.0.1", 8080, 1024 * 1024)
    assert s.manufacturer_ids() == {"acme-bio", "nova-cell"} and s.site_ids() == {"site-a", "site-b"}
    cart = s.product("acme-bio", "CART-CD19")
    hem = s.product("nova-cell", "GT-HEM-01")
    assert cart and cart.autologous and cart.coi_format == "isbt128"
    assert hem and hem.autologous and hem.coi_format == "manufacturer" and hem.coi_pattern == "^NC-[0-9]{6}$"
    assert s.product("acme-bio", "GT-HEM-01") is None and s.product_owner("GT-HEM-01") == "nova-cell"
    roles = {
        t: s.role_for_token_hash(hash_token(t))
        for t in (
            "demo-acme-token",
            "demo-nova-token",
            "demo-site-a-token",
            "demo-site-b-token",
            "demo-admin-token",
        )
    }
    assert roles == {
        "demo-acme-token": "manufacturer:acme-bio",
        "demo-nova-token": "manufacturer:nova-cell",
        "demo-site-a-token": "site:site-a",
        "demo-site-b-token": "site:site-b",
        "demo-admin-token": "admin",
    }
    assert s.role_for_token_hash(hash_token("guess")) is None
    for site in s.sites:  # resolved against the configuration file's directory
        assert site.profile.is_absolute() and site.profile.exists()
    clients = yaml.safe_load(DEMO_CONFIG.read_text())["api_clients"]
    assert all(set(c) == {"name", "role", "token_sha256"} for c in clients)  # no clear-text tokens


def test_environment_overrides_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("CGT_GATEWAY_DATABASE_URL", "postgresql://x@db/gw")
    monkeypatch.setenv("CGT_GATEWAY_PORT", "9090")
    s = load_settings(DEMO_CONFIG)
    assert (s.database_url, s.port) == ("postgresql://x@db/gw", 9090)
    assert load_settings(DEMO_CONFIG, port=7000).port == 7000  # explicit arguments win


def test_config_file_from_environment(monkeypatch, tmp_path):
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["port"] = 8181
    for site in data["sites"]:
        site["profile"] = str((DEMO_CONFIG.parent / site["profile"]).resolve())
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("CGT_GATEWAY_CONFIG", str(path))
    assert load_settings().port == 8181


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    mutate(data)
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda d: d["api_clients"].append(
                {"name": "x", "role": "manufacturer:ghost", "token_sha256": "a" * 64}
            ),
            "unknown manufacturer",
        ),
        (
            lambda d: d["api_clients"].append({"name": "x", "role": "root", "token_sha256": "b" * 64}),
            "role must be",
        ),
        (
            lambda d: d["api_clients"].append({"name": "x", "role": "admin", "token_sha256": "plaintext"}),
            "token_sha256",
        ),
        (lambda d: d["manufacturers"][1]["products"][0].pop("coi_pattern"), "coi_pattern is required"),
        (
            lambda d: d["manufacturers"][1]["products"][0].update(coi_pattern="(["),
            "not a valid regular expression",
        ),
        (lambda d: d["manufacturers"][0]["products"][0].update(coi_format="barcode"), "coi_format"),
        (lambda d: d["sites"].append(dict(d["sites"][0])), "appears twice"),
        (lambda d: d.update(colour="blue"), "colour"),
    ],
)
def test_invalid_configuration_is_refused_with_a_reason(tmp_path, mutate, message):
    with pytest.raises(ValidationError, match=message):
        load_settings(_write(tmp_path, mutate))


def test_parse_role():
    assert parse_role("manufacturer:acme-bio") == ("manufacturer", "acme-bio")
    assert parse_role("site:site-a") == ("site", "site-a")
    assert parse_role("admin") == ("admin", None)
    for bad in ("admin:x", "manufacturer:", "clinic:x", ""):
        with pytest.raises(ValueError):
            parse_role(bad)
