"""Q4 (outside QA): README's ``profile preview`` example previews an order with the profile of the
order's own site, so a reader following it sees no ``other-site`` warning."""

from __future__ import annotations

import json
import re
import subprocess

import yaml

from tests.e2e.test_q1_outsider import ROOT, _readme_cli


def test_readme_preview_uses_the_orders_own_site_profile():
    command = _readme_cli(".venv/bin/cgt-gateway profile preview")
    profile = re.search(r"--profile (\S+)", command)
    order = re.search(r"--order (\S+)", command)
    assert profile and order, command
    site_id = yaml.safe_load((ROOT / profile.group(1)).read_text())["site_id"]
    case = json.loads((ROOT / order.group(1)).read_text())
    assert case["order"]["site_id"] == site_id, (profile.group(1), order.group(1))
    out = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "other-site" not in out.stdout + out.stderr
    assert "--- issues (0)" in out.stdout
