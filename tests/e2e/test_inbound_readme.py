"""The README's "Sites send changes back" commands, run as written (ports aside) against a real
``cgt-gateway serve`` whose site-a listens: curl as the manufacturer, python-hl7's ``mllp_send`` as the
site's engine.  Run twice: the second run is answered from what the first stored."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.serving import free_port, serve
from tests.e2e.test_inbound_serve import write_config
from tests.unit.inbound_cases import validate_strict

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def section_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Sites send changes back\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_section_holds_the_three_steps():
    blocks = section_blocks()
    assert len(blocks) == 3
    assert "mllp_send" in blocks[1] and "/decision" in blocks[2]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_inbound_commands_work_as_written(tmp_path):
    port = free_port()
    config = write_config(tmp_path, port, None)
    with serve(tmp_path, inbound=True, env_extra={"CGT_GATEWAY_CONFIG": str(config)}) as served:
        env = {**served.env, "PATH": f"{BIN}:{served.env.get('PATH', '')}"}
        runs = []
        for _ in range(2):
            outputs = []
            for block in section_blocks():
                assert "http://127.0.0.1:8080" in block or "--port 2575" in block
                script = (block.replace("http://127.0.0.1:8080", served.base)
                          .replace("--port 2575", f"--port {port}")
                          .replace(".venv/bin/mllp_send", str(BIN / "mllp_send")))
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=tmp_path, env=env,
                                      capture_output=True, text=True, timeout=60)
                assert done.returncode == 0, done.stderr
                outputs.append(done.stdout)
            runs.append(outputs)
        placed, asked, decided = runs[0]
        assert placed.startswith('{"order_id":"ORD-2001"') and '"type":"collection.completed"' in placed
        validate_strict((tmp_path / "cancel.hl7").read_text().replace("\n", "\r"))
        ack = asked.strip().replace("\n", "\r") + "\r"
        validate_strict(ack)
        assert re.search(r"^MSA\|AA\|SITE-A-0001\|request sr-[0-9a-f]+ awaiting-manufacturer$", asked, re.M)
        assert '"state":"awaiting-manufacturer"' in decided.replace(" ", "")
        assert '"state":"declined"' in decided.replace(" ", "")
        assert '"statusReason":{"text":"The cells are already in manufacturing"}' in decided  # the Task
        # the second run: the site's resend got the stored ACK, the decision repeat changed nothing
        assert runs[1][1] == asked
        assert '"state":"declined"' in runs[1][2].replace(" ", "")
