"""Any user text survives rendering and independent parsing (python-hl7 + its unescape) unchanged,
and never adds a segment, field or component."""

from __future__ import annotations

from typing import Any

import hl7
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mappings.domain import EventType
from mappings.hl7v2.charset import transliterate
from mappings.result import Hl7Message
from mappings.snapshot import OrderSnapshot
from tests.unit.hl7v2_cases import journey, profile, render

DELIMITERS = list("|^~\\&\r\n<>\"'\t\x0b\x1c")
TEXT = st.text(
    # NUL is refused by the domain models (no store or message can hold it).
    alphabet=st.one_of(st.sampled_from(DELIMITERS),
                       st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")),
    min_size=1,
    max_size=60,
)
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _with_order(snapshot: OrderSnapshot, **changes: Any) -> OrderSnapshot:
    return snapshot.model_copy(update={"order": snapshot.order.model_copy(update=changes)})


def _component(message: Hl7Message, segment_id: str, field: int, component: int = 1) -> str:
    """python-hl7's own path accessor, which unescapes the leaf value."""
    value = hl7.parse(message.er7).extract_field(segment_id, 1, field, 1, component, 1)
    assert isinstance(value, str)
    return value


def _shape(message: Hl7Message) -> list[tuple[str, int]]:
    return [(line[:3], line.count("|")) for line in message.er7.split("\r") if line]


@SLOW
@given(family=TEXT, first=TEXT, mrn=TEXT)
def test_patient_names_and_mrn_survive(family: str, first: str, mrn: str) -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    baseline = render(snapshot, record, profile("site-a"))[0][0]
    patient = snapshot.order.patient.model_copy(
        update={"family": family, "given": [first, "Lucia"], "mrn": mrn}
    )
    (message,), _ = render(_with_order(snapshot, patient=patient), record, profile("site-a"))
    assert _component(message, "PID", 5, 1) == family
    assert _component(message, "PID", 5, 2) == first
    assert _component(message, "PID", 3, 1) == mrn
    assert _shape(message) == _shape(baseline)


@SLOW
@given(note=TEXT)
def test_order_note_survives(note: str) -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    (message,), _ = render(_with_order(snapshot, note=note), record, profile("site-a"))
    assert _component(message, "NTE", 3) == note
    assert [line[:3] for line in message.er7.split("\r") if line][-1] == "NTE"


@SLOW
@given(reason=TEXT)
def test_hold_reason_survives_in_nte_and_orc_16_stays_coded(reason: str) -> None:
    for site in ("site-a", "site-b"):
        snapshot, record = next(
            (s, r) for s, r in journey(site, "journey-autologous") if r.type is EventType.order_on_hold
        )
        baseline = render(snapshot, record, profile(site))[0][0]
        held = record.model_copy(update={"data": {"reason": reason}})
        (message,), _ = render(snapshot, held, profile(site))
        assert _component(message, "ORC", 16, 1) == _component(baseline, "ORC", 16, 1)  # the coded status
        assert _component(message, "ORC", 16, 3) in ("99CGT", "L")
        # site-b declares no MSH-18 (ASCII): the reason arrives transliterated, never in other bytes
        expected = reason if site == "site-a" else transliterate(reason, "ascii")[0]
        assert _component(message, "NTE", 3) == expected
        assert _shape(message) == _shape(baseline)
