"""HL7v2 rendering: every message valid for hl7apy and read identically by python-hl7, codes from their
tables, the event -> ORC table, identifiers, timestamps, patient identity and CoI per profile."""

from __future__ import annotations

from datetime import timedelta

import hl7
import pytest

from mappings.domain import EventType, OrderStatus
from mappings.events import EventRecord
from mappings.hl7v2.render import render_messages
from mappings.profile.schema import SiteProfile
from mappings.result import Hl7Message
from mappings.snapshot import OrderSnapshot
from terminology import load_terminology
from terminology.hl7_tables import load_hl7_tables
from tests.unit.hl7v2_cases import (
    CASES,
    NOW,
    SITES,
    journey,
    profile,
    render,
    render_journey,
    same_fields_in_both_parsers,
    variant,
)

VARIANTS = {
    "site-a": lambda: profile("site-a"),
    "site-b": lambda: profile("site-b"),
    "2.5.1-orm-obx-bps": lambda: variant(
        "site-a", order_message="ORM^O01", blood_product_status=True, coi_location="OBX"
    ),
    "2.5.1-oml-zcg-bps": lambda: variant(
        "site-b",
        version="2.5.1",
        charset="UNICODE UTF-8",
        order_message="OML^O21",
        scheduling=True,
        blood_product_status=True,
    ),
    "2.4-oml-zcg-siu": lambda: variant("site-a", version="2.4", charset="UNICODE", coi_location="ZCG"),
    "2.3-orm-obx-siu": lambda: variant(
        "site-b", scheduling=True, coi_location="OBX", ack_mode="enhanced", application_ack_type="ER"
    ),
}


def _field(message: Hl7Message, segment_id: str, number: int, occurrence: int = 0) -> str:
    segments = [s for s in hl7.parse(message.er7) if str(s[0]) == segment_id]
    seg = segments[occurrence]
    return str(seg[number]) if len(seg) > number else ""


def _by_type(
    messages: list[tuple[EventRecord, Hl7Message]], message_type: str
) -> list[tuple[EventRecord, Hl7Message]]:
    return [(r, m) for r, m in messages if m.message_type == message_type]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_message_validates_and_both_parsers_read_the_same_fields(name: str, case: str) -> None:
    """Demo sites: every message (hl7apy is slow); other variants: the first of each message type."""
    messages = render_journey(VARIANTS[name](), case)
    assert messages
    checked: set[str] = set()
    for _, message in messages:
        if name not in SITES and message.message_type in checked:
            continue
        checked.add(message.message_type)
        same_fields_in_both_parsers(message)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_coded_fields_come_from_their_hl7_tables(name: str) -> None:
    tables = load_hl7_tables()
    checks = {
        ("ORC", 1): "0119",
        ("ORC", 5): "0038",
        ("OBX", 11): "0085",
        ("OBX", 8): "0078",
        ("PID", 8): "0001",
        ("OBR", 25): "0123",
        ("SCH", 25): "0278",
        ("BPX", 2): "0510",
        ("BTX", 11): "0513",
        ("MSH", 15): "0155",
        ("MSH", 16): "0155",
        ("MSH", 11): "0103",
        ("NTE", 2): "0105",
        ("MSH", 18): "0211",
    }
    seen: set[tuple[str, int]] = set()
    for case in CASES:
        for _, message in render_journey(VARIANTS[name](), case):
            for seg in hl7.parse(message.er7):
                for (segment_id, number), table in checks.items():
                    if str(seg[0]) == segment_id and len(seg) > number and str(seg[number]):
                        assert tables.contains(table, str(seg[number])), (
                            segment_id,
                            number,
                            str(seg[number]),
                        )
                        seen.add((segment_id, number))
    assert {("ORC", 1), ("ORC", 5), ("OBX", 11)} <= seen


def test_order_control_and_status_follow_the_event_table() -> None:
    site = profile("site-a")
    got = {}
    for record, message in render_journey(site, "journey-autologous"):
        if message.message_type == "OML^O21":
            got[record.event_id] = (_field(message, "ORC", 1), _field(message, "ORC", 5))
    assert got == {
        "ACME-ORD-1001:placed": ("NW", ""),
        "evt-001": ("SC", "SC"),
        "evt-002": ("SC", "SC"),
        "evt-003": ("SC", "SC"),
        "evt-004": ("SC", "IP"),
        "evt-005": ("SC", "IP"),
        "evt-006": ("SC", "IP"),
        "evt-007": ("SC", "IP"),
        "evt-008": ("SC", "IP"),
        "evt-009": ("SC", "IP"),
        "evt-010": ("SC", "IP"),
        "evt-011": ("SC", "IP"),
        "evt-012": ("SC", "IP"),
        "evt-013": ("HD", "HD"),
        "evt-014": ("RL", "IP"),
        "evt-015": ("SC", "IP"),
        "evt-016": ("SC", "IP"),
        "evt-017": ("SC", "IP"),
        "evt-018": ("SC", "IP"),
        "evt-019": ("SC", "SC"),
        "evt-020": ("SC", "CM"),
    }
    cancelled = {
        r.event_id: (_field(m, "ORC", 1), _field(m, "ORC", 5), _field(m, "ORC", 16))
        for r, m in render_journey(profile("site-b"), "journey-cancelled")
        if m.message_type == "ORM^O01"
    }
    # ORC-16 is the coded business status in every message, HD/OC too (the reason text goes to NTE)
    assert cancelled["nc-003"] == ("HD", "HD", "CGT90^ON HOLD^L")
    assert cancelled["nc-008"] == ("OC", "CA", "CGT91^CANCELLED^L")
    assert cancelled["nc-001"][2] == "CGT02^SLOT CONFIRMED^L"  # business status, site-b's local code


def _failed_release(site: SiteProfile) -> tuple[OrderSnapshot, EventRecord]:
    snapshot, record = next(
        (s, r) for s, r in journey(site.site_id, "journey-autologous") if r.type is EventType.release_failed
    )
    failed = record.model_copy(
        update={"status_after": OrderStatus.failed, "data": {**record.data, "disposition": "not_releasable"}}
    )
    return snapshot.model_copy(update={"status": OrderStatus.failed}), failed


def test_a_failed_order_is_discontinued() -> None:
    messages, _ = render(*_failed_release(profile("site-a")), profile("site-a"))
    assert (_field(messages[0], "ORC", 1), _field(messages[0], "ORC", 5)) == ("OD", "DC")


def test_control_ids_are_deterministic_unique_and_short() -> None:
    ids = []
    for site in SITES:
        for case in CASES:
            first = render_journey(profile(site), case)
            again = render_journey(profile(site), case)
            assert [m.control_id for _, m in first] == [m.control_id for _, m in again]
            for _, message in first:
                assert _field(message, "MSH", 10) == message.control_id
                assert 1 <= len(message.control_id) <= 20 and message.control_id.isalnum()
                ids.append(message.control_id)
    assert len(ids) == len(set(ids))


def test_segments_end_with_carriage_returns_and_declare_the_profile_header() -> None:
    for _, message in render_journey(profile("site-a"), "journey-autologous"):
        assert message.er7.endswith("\r") and "\n" not in message.er7 and "\r\r" not in message.er7
        assert message.er7.startswith("MSH|^~\\&|CGT-GATEWAY|CGTGW|EPIC|SITE-A|")
        assert _field(message, "MSH", 9).startswith(message.message_type)
        assert (_field(message, "MSH", 11), _field(message, "MSH", 12)) == ("P", "2.5.1")
        assert (_field(message, "MSH", 15), _field(message, "MSH", 16)) == ("AL", "AL")
        assert _field(message, "MSH", 18) == "UNICODE UTF-8"
    for _, message in render_journey(profile("site-b"), "journey-cancelled"):
        assert _field(message, "MSH", 9) in ("ORM^O01", "ORU^R01")  # 2.3: no message structure
        assert (_field(message, "MSH", 15), _field(message, "MSH", 16), _field(message, "MSH", 18)) == (
            "",
            "",
            "",
        )


def test_timestamps_are_in_the_site_timezone_with_offset() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    (message,), _ = render(snapshot, record, profile("site-a"))
    assert _field(message, "MSH", 7) == "20260601080000-0400"  # NOW = 12:00Z, New York summer time
    assert _field(message, "ORC", 9) == "20260302090000-0500"  # placed 14:00Z, New York winter time
    snapshot, record = journey("site-b", "journey-autologous")[0]
    (message,), _ = render(snapshot, record, profile("site-b"))
    assert _field(message, "MSH", 7) == "20260601070000-0500"  # Chicago


def test_patient_identity_follows_the_profile() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    (full,), _ = render(snapshot, record, profile("site-a"))
    assert [_field(full, "PID", n) for n in (3, 5, 7, 8)] == [
        "MRN-448812^^^SITEA^MR",
        "Rivera^Ana^Lucia",
        "19710814",
        "F",
    ]
    snapshot, record = journey("site-b", "journey-autologous")[0]
    (mrn_only,), _ = render(snapshot, record, profile("site-b"))
    assert [_field(mrn_only, "PID", n) for n in (3, 5, 7, 8)] == ["MRN-448812^^^SITEB^MR", "^^^^^^U", "", ""]
    assert "Rivera" not in mrn_only.er7 and "19710814" not in mrn_only.er7


def test_coi_goes_where_the_profile_says() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    (orc4,), _ = render(snapshot, record, profile("site-a"))
    assert _field(orc4, "ORC", 4) == "CHA999926123456K^ISBT128" and "ZCG" not in orc4.er7
    (zcg,), _ = render(snapshot, record, variant("site-a", coi_location="ZCG"))
    assert _field(zcg, "ORC", 4) == "" and _field(zcg, "ZCG", 2) == "CHA999926123456K^ISBT128"
    assert _field(zcg, "ZCG", 3) == "isbt128"
    (obx,), _ = render(snapshot, record, variant("site-a", coi_location="OBX"))
    assert _field(obx, "OBX", 3) == "coi^Chain of Identity identifier^99CGT"
    assert _field(obx, "OBX", 5) == "CHA999926123456K" and _field(obx, "ORC", 4) == ""
    manufacturer = journey("site-b", "journey-cancelled")[0]
    (message,), _ = render(*manufacturer, profile("site-b"))
    assert _field(message, "ZCG", 2) == "NC-000123^nova-cell"


def test_results_carry_codes_units_and_out_of_specification_flags() -> None:
    oru = {
        r.event_id: m for r, m in _by_type(render_journey(profile("site-a"), "journey-autologous"), "ORU^R01")
    }
    assert set(oru) == {"evt-004", "evt-009", "evt-012", "evt-017"}
    failed = oru["evt-009"]
    rows = [[_field(failed, "OBX", n, i) for n in (2, 3, 5, 6, 7, 8, 11)] for i in range(4)]
    assert rows[0] == [
        "NM",
        "viability_pct^Viable cells/Cells in product^99CGT",
        "72",
        "%^%^UCUM",
        ">=80",
        "L",
        "F",
    ]
    assert rows[1][4:6] == ["15-60", ""]
    assert rows[2][:3] == ["CWE", "sterility^Sterility test result^99CGT", "260385009^Negative^SCT"]
    assert rows[2][5] == ""
    assert rows[3][2:6] == ["0.4", "{EU}/mL^{EU}/mL^UCUM", "<5", ""]
    assert _field(failed, "NTE", 3) == "Viability below specification"
    assert _field(failed, "NTE", 4) == "1R^Primary Reason^HL70364"
    assert _field(oru["evt-004"], "OBX", 3, 1) == "95836-3^CD3 cells [#] in Blood product unit^LN"
    assert (_field(failed, "OBR", 25), _field(failed, "ORC", 1)) == ("F", "RE")
    local = {
        r.event_id: m for r, m in _by_type(render_journey(profile("site-b"), "journey-autologous"), "ORU^R01")
    }
    assert _field(local["evt-009"], "OBX", 3) == "LAB7004^VIABILITY^L"
    assert _field(local["evt-009"], "OBX", 2, 2) == "CE"  # 2.3 has no CWE


def test_results_off_sends_no_oru() -> None:
    messages = render_journey(variant("site-a", results=False), "journey-autologous")
    assert not _by_type(messages, "ORU^R01")


def test_scheduling_books_reschedules_and_cancels_appointments() -> None:
    messages = render_journey(profile("site-a"), "journey-autologous")
    siu = [
        (r.event_id, m.message_type, _field(m, "SCH", 1), _field(m, "SCH", 25), _field(m, "AIS", 4))
        for r, m in messages
        if m.message_type.startswith("SIU")
    ]
    assert siu == [
        ("evt-002", "SIU^S12", "ACME-ORD-1001-APH^CGT-GATEWAY", "Booked", "20260310090000-0400"),
        ("evt-003", "SIU^S13", "ACME-ORD-1001-APH^CGT-GATEWAY", "Booked", "20260312090000-0400"),
        ("evt-019", "SIU^S12", "ACME-ORD-1001-INF^CGT-GATEWAY", "Booked", "20260422090000-0400"),
    ]
    s13 = next(m for _, m in messages if m.message_type == "SIU^S13")
    assert _field(s13, "NTE", 3) == "Platelet count below the collection threshold"
    assert _field(s13, "AIS", 7) == "240" and _field(s13, "SCH", 26) == "ACME-ORD-1001^CGT-GATEWAY"
    assert not [
        m
        for _, m in render_journey(profile("site-b"), "journey-autologous")
        if m.message_type.startswith("SIU")
    ]


def test_cancelling_cancels_the_pending_appointment_only() -> None:
    snapshot, booked = next(
        (s, r) for s, r in journey("site-a", "journey-cancelled") if r.type is EventType.apheresis_scheduled
    )
    cancel = EventRecord(
        event_id="nc-x",
        type=EventType.order_cancelled,
        occurred_at=booked.occurred_at + timedelta(hours=1),
        coi=booked.coi,
        data={"reason": "Patient withdrew consent"},
        sequence=booked.sequence + 1,
        accepted_at=booked.accepted_at,
        status_after=OrderStatus.cancelled,
    )
    cancelled = snapshot.model_copy(
        update={"events": (*snapshot.events, cancel), "status": OrderStatus.cancelled}
    )
    messages, _ = render(cancelled, cancel, profile("site-a"))
    assert [m.message_type for m in messages] == ["OML^O21", "SIU^S15"]
    assert (_field(messages[1], "SCH", 25), _field(messages[1], "NTE", 3)) == (
        "Cancelled",
        "Patient withdrew consent",
    )
    same_fields_in_both_parsers(messages[1])
    # after the collection there is nothing left to cancel
    last = journey("site-a", "journey-cancelled")[-1]
    assert last[1].type is EventType.order_cancelled
    assert [m.message_type for m in render(*last, profile("site-a"))[0]] == ["OML^O21"]


def test_blood_product_status_when_opted_in() -> None:
    site = variant("site-a", blood_product_status=True)
    messages = render_journey(site, "journey-autologous")
    ((bps_record, bps),) = _by_type(messages, "BPS^O29")
    ((bts_record, bts),) = _by_type(messages, "BTS^O31")
    assert (bps_record.type, bts_record.type) == (EventType.shipment_received, EventType.product_infused)
    assert (_field(bps, "BPX", 2), _field(bts, "BTX", 11)) == ("RI", "TX")
    assert _field(bps, "BPX", 5).startswith("A999926123456") and _field(bts, "BTX", 2) == _field(
        bps, "BPX", 5
    )
    assert not _by_type(render_journey(profile("site-a"), "journey-autologous"), "BPS^O29")


def test_disabled_profile_renders_nothing() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    assert render_messages(snapshot, record, variant("site-a", enabled=False), load_terminology(), NOW) == (
        (),
        (),
    )


def test_overrides_replace_fields_and_a_failing_template_keeps_the_default() -> None:
    site = variant(
        "site-a",
        overrides={
            "OBR-4": "{{ product.local_code }}^{{ product.display | upper }}^L",
            "PID-5": "{{ order.patient.family }}^{{ order.patient.given | join(' ') }}",
            "NTE-2": "{{ codes.order_control }}",
            "ORC-10": "{{ event.data.reason.upper() }}",  # no reason on most events: fails at run time
        },
    )
    snapshot, record = journey("site-a", "journey-autologous")[0]
    (message,), issues = render(snapshot, record, site)
    assert _field(message, "OBR", 4) == "CGT-CART19^AUTOLOGOUS ANTI-CD19 CAR-T CELL THERAPY^L"
    assert _field(message, "PID", 5) == "Rivera^Ana Lucia"
    assert _field(message, "NTE", 2) == "NW"
    assert _field(message, "ORC", 10) == ""
    assert [(i.severity, i.code, i.path) for i in issues] == [
        ("error", "hl7v2-override-failed", "profile.hl7v2.overrides.ORC-10")
    ]
    same_fields_in_both_parsers(message)


def test_unmapped_product_falls_back_to_the_manufacturer_code_with_a_warning() -> None:
    site = profile("site-a").model_copy(update={"products": {}})
    snapshot, record = journey("site-a", "journey-autologous")[0]
    (message,), issues = render(snapshot, record, site)
    assert _field(message, "OBR", 4).startswith("CART-CD19^")
    assert [(i.severity, i.code) for i in issues] == [("warning", "unmapped-code")]


def test_a_specification_that_cannot_be_evaluated_is_reported() -> None:
    snapshot, record = next(
        (s, r) for s, r in journey("site-a", "journey-autologous") if r.type is EventType.release_passed
    )
    data = {"results": [{"code": "viability_pct", "value": 91, "unit": "%", "specification": "about 80"}]}
    messages, issues = render(snapshot, record.model_copy(update={"data": data}), profile("site-a"))
    oru = next(m for m in messages if m.message_type == "ORU^R01")
    assert (_field(oru, "OBX", 7), _field(oru, "OBX", 8)) == ("about 80", "")
    assert [(i.code, i.path) for i in issues] == [
        ("specification-not-evaluated", "event.data.results[0].specification")
    ]
