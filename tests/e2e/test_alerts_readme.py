"""The README's "Milestone alerts and site certification" commands, run as written (port aside) against a
real ``cgt-gateway serve`` on the demo configuration (its alert scheduler running)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fhir.resources.R4B import get_fhir_model_class

from tests.e2e.serving import serve

ROOT = Path(__file__).resolve().parents[2]


def section_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Milestone alerts and site certification\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_section_holds_the_three_steps():
    blocks = section_blocks()
    assert len(blocks) == 3
    assert "temperature_c" in blocks[0] and "/acknowledge" in blocks[1]
    assert "/v1/admin/certifications" in blocks[2]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_alert_commands_work_as_written(tmp_path):
    with serve(tmp_path) as served:
        outputs = []
        for block in section_blocks():
            assert "http://127.0.0.1:8080" in block
            done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c",
                                   block.replace("http://127.0.0.1:8080", served.base)],
                                  cwd=tmp_path, env=served.env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
            outputs.append(done.stdout)
        raised, acknowledged, certification = outputs
        listing = json.loads(raised[raised.index('{"items"'):])
        [alert] = listing["items"]
        assert alert["kind"] == "temperature-excursion" and alert["state"] == "open"
        assert alert["detail"]["temperature_c"] == 14.5 and alert["detail"]["phase"] == "collected_material"
        decoder = json.JSONDecoder()
        ack, end = decoder.raw_decode(acknowledged)
        assert ack["state"] == "acknowledged" and ack["note"].startswith("Shipper repacked")
        bundle = json.loads(acknowledged[end:].strip())
        flags = [e["resource"] for e in bundle["entry"]]
        assert [f["code"]["coding"][0]["code"] for f in flags] == ["temperature-excursion"]
        get_fhir_model_class("Bundle").model_validate(bundle)
        recorded, end = decoder.raw_decode(certification)
        assert recorded["status"] == "suspended" and recorded["source"] == "admin"
        problem, end2 = decoder.raw_decode(certification, end)
        assert problem["status"] == 422 and problem["code"] == "site-not-certified"
        assert "site-b" in problem["detail"] and "CART-CD19" in problem["detail"]
        listed = json.loads(certification[end2:].strip())
        assert {(c["product_code"], c["status"]) for c in listed["items"]} == {
            ("CART-CD19", "suspended"), ("GT-HEM-01", "certified")}
