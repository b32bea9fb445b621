"""The README's curl examples, run verbatim (port aside) against a real `cgt-gateway serve`."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.serving import serve

ROOT = Path(__file__).resolve().parents[2]
# ... then the retraction examples: retract EVT-3, read the order, the genuine collection EVT-4 (its DIN is
# free again once EVT-3 is retracted), and the order-placing event refused (409 retraction-conflict); a repeat
# retraction is 200 and changes nothing. Then nova-cell's order, and its collection refused 422 din-in-use.
FIRST_RUN = [201, 201, 201, 201, 200, 200, 422, 200, 422, 400, 404, 403, 401, 200, 200, 201, 409, 201, 422]
REPEAT_RUN = [200, 200, 200, 200, 200, 200, 422, 200, 422, 400, 404, 403, 401, 200, 200, 200, 409, 200, 422]
# Then the later sections: site preview, three FHIR polls, outbox, alerts, metrics, the audit trail search
# (read-only, 200 each).
LATER_RUN = [200] * 8
FIRST_RUN += LATER_RUN
REPEAT_RUN += LATER_RUN


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    with serve(tmp_path) as served:  # with the in-process delivery worker, as `make run`
        yield served.base
    text = (tmp_path / "server.log").read_text()
    for secret in ("Doe", "Jane", "MRN-0042", "1980-04-12", "Roe", "B-7781"):
        assert secret not in text, f"{secret!r} appeared in the server log"
    assert '"mapping issue"' not in text, "a README example should translate without mapping issues"


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        if "make run" in block or "token create" in block:
            continue
        current = ""
        for line in block.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            current += line + "\n"
            if not line.rstrip().endswith("\\") and current.count("'") % 2 == 0:
                if current.startswith("curl "):  # the CLI examples are checked elsewhere
                    commands.append(current)
                current = ""
    return commands


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_curl_examples_work_verbatim(server):
    commands = _readme_commands()
    assert len(commands) == len(FIRST_RUN)
    for expected in (FIRST_RUN, REPEAT_RUN):
        statuses = []
        for command in commands:
            assert "http://127.0.0.1:8080" in command
            command = command.replace("http://127.0.0.1:8080", server).replace(
                "curl -s ", "curl -s -o /dev/null -w '%{http_code}' ", 1
            )
            out = subprocess.run(
                ["bash", "-c", command], capture_output=True, text=True, timeout=30, check=True
            )
            statuses.append(int(out.stdout.strip()))
        assert statuses == expected
