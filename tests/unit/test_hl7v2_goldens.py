"""The golden ``.hl7`` files (written by ``python -m gateway.cli.goldens`` from ``Translation.messages``)
hold exactly what ``render_messages`` renders for every event of both demo journeys, compared after
removing the volatile fields MSH-7 (message time) and MSH-10 (control id)."""

from __future__ import annotations

import pytest

from gateway.cli.goldens import CASES, SITES, expected_paths
from tests.unit.hl7v2_cases import journey, profile, render

VOLATILE_MSH_FIELDS = (7, 10)
REGENERATE = "golden out of date: run `python -m gateway.cli.goldens` and review the diff"


def strip_volatile(segment_line: str) -> str:
    """A segment with MSH-7 and MSH-10 emptied (other segments unchanged)."""
    if not segment_line.startswith("MSH|"):
        return segment_line
    fields = segment_line.split("|")  # fields[n] is MSH-(n+1)
    for number in VOLATILE_MSH_FIELDS:
        if len(fields) > number - 1:
            fields[number - 1] = ""
    return "|".join(fields)


def golden_messages(text: str) -> dict[str, list[list[str]]]:
    """event id -> its messages, each a list of segment lines (volatile fields removed)."""
    events: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    message: list[str] = []
    for line in text.splitlines():
        if line.startswith("# "):
            current = events.setdefault(line[2:].split(" ", 1)[0], [])
            message = []
        elif not line:
            message = []
        else:
            assert current is not None, "segment before the first event header"
            if line.startswith("MSH|"):
                message = []
                current.append(message)
            message.append(strip_volatile(line))
    return events


def test_strip_volatile_removes_only_msh_7_and_msh_10() -> None:
    line = "MSH|^~\\&|A|B|C|D|20260601080000-0400||OML^O21^OML_O21|ABC|P|2.5.1"
    assert strip_volatile(line) == "MSH|^~\\&|A|B|C|D|||OML^O21^OML_O21||P|2.5.1"
    assert strip_volatile("PID|1||X") == "PID|1||X"


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("site_id", SITES)
def test_golden_hl7_matches_the_renderer(site_id: str, case: str) -> None:
    _, hl7_path = expected_paths(site_id, case)
    golden = golden_messages(hl7_path.read_text(encoding="utf-8"))
    rendered: dict[str, list[list[str]]] = {}
    for snapshot, record in journey(site_id, case):
        messages, _ = render(snapshot, record, profile(site_id))
        rendered[record.event_id] = [
            [strip_volatile(line) for line in m.er7.split("\r") if line] for m in messages
        ]
    assert set(rendered) <= set(golden), REGENERATE
    for event_id, messages in golden.items():
        assert messages == rendered.get(event_id, []), f"{event_id}: {REGENERATE}"
