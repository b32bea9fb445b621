"""The README's "Connect a system with SMART Backend Services" steps, run as written (port and CLI path
aside) in one bash shell against a real `cgt-gateway serve`: openssl key pair, `client register`, an
assertion signed with openssl, the token from curl, and the API called with it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.config import OAuthClientConfig
from tests.e2e.serving import CLI, serve

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Connect a system with SMART Backend Services"


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return text[start:end]


def _script(base: str) -> str:
    blocks = re.findall(r"```bash\n(.*?)```", _section(), re.S)
    assert len(blocks) == 4
    script = "set -euo pipefail\n" + "\n".join(blocks)
    assert script.count("http://127.0.0.1:8080") == 4
    return script.replace("http://127.0.0.1:8080", base).replace(".venv/bin/cgt-gateway", str(CLI))


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("openssl") is None,
                    reason="curl and openssl are needed")
def test_readme_smart_backend_services_steps_work_as_written(tmp_path):
    with serve(tmp_path) as served:
        # an order at site-a, so the site's client has a Task to read
        from tests.conftest import order_body

        order = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{served.base}/v1/orders",
             "-H", "Authorization: Bearer demo-acme-token", "-H", "Content-Type: application/json",
             "-d", json.dumps(order_body("README-OAUTH-1"))], capture_output=True, text=True, check=True)
        assert order.stdout == "201"
        checks = ('\necho; echo "TOKEN:$ACCESS_TOKEN"\n'
                  f"curl -s {served.base}/oauth/token -d grant_type=client_credentials "
                  "-d client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer "
                  '-d client_assertion="$ASSERTION" --data-urlencode "scope=orders.read"\n')
        result = subprocess.run(["bash", "-c", _script(served.base) + checks], cwd=tmp_path, env=served.env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    client_id, answers, token_line, replay = result.stdout.split("\n", 3)
    assert re.fullmatch(r"[0-9a-f]{32}", client_id)
    bundle, end = json.JSONDecoder().raw_decode(answers)  # curl prints no newline after a body
    orders = json.loads(answers[end:])
    assert bundle["resourceType"] == "Bundle" and len(bundle["entry"]) == 1
    assert [o["order_id"] for o in orders["items"]] == ["README-OAUTH-1"]
    assert token_line.startswith("TOKEN:cgt_at_")
    assert json.loads(replay)["error"] == "invalid_client"  # the same assertion (jti) twice
    assert not (tmp_path / "client.key").read_text().startswith("-----BEGIN PUBLIC")  # the private key stayed


def test_readme_client_configuration_example_validates():
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", _section(), re.S)]
    [client] = yaml.safe_load(block)["oauth_clients"]
    OAuthClientConfig.model_validate(client)
