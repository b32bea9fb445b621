"""The README's `delivery:` example is a valid profile section (it must not drift from the model)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from mappings.profile.delivery import DeliverySettings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_delivery_example_validates() -> None:
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
              if b.startswith("delivery:")]
    assert len(blocks) == 1
    settings = DeliverySettings.model_validate(yaml.safe_load(blocks[0])["delivery"])
    assert settings.mllp is not None and settings.mllp.tls and not settings.mllp.wait_for_application_ack
    assert settings.fhir_push is not None and settings.fhir_push.auth.token_env == "SITE_A_FHIR_TOKEN"
