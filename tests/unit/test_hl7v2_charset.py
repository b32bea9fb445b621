"""HL7v2 character sets (issue 11, item 6): a site that declares no MSH-18 (ASCII) or 8859/1 never
receives characters outside that set; ``charset_fallback`` transliterates (the default) or refuses,
identifiers are never transliterated, and preview shows what happened."""

from __future__ import annotations

from typing import Any

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.delivery.senders import mllp_endpoint
from mappings.domain import EventType
from mappings.er7.charsets import python_codec
from mappings.hl7v2.charset import fit_segments, transliterate
from mappings.preview import preview_steps
from mappings.profile.delivery import MllpEndpoint
from mappings.profile.loader import ProfileInvalid, load_profile_text
from mappings.result import Hl7Message
from mappings.snapshot import OrderSnapshot
from terminology import load_terminology
from tests.unit.hl7v2_cases import FIXTURES, NOW, journey, profile, render, variant

ZOE = {"family": "Núñez", "given": ["Zoë"]}


def _with_patient(snapshot: OrderSnapshot, **changes: Any) -> OrderSnapshot:
    patient = snapshot.order.patient.model_copy(update=changes)
    return snapshot.model_copy(update={"order": snapshot.order.model_copy(update={"patient": patient})})


def _with_order(snapshot: OrderSnapshot, **changes: Any) -> OrderSnapshot:
    return snapshot.model_copy(update={"order": snapshot.order.model_copy(update=changes)})


def _field(message: Hl7Message, segment_id: str, number: int, component: int = 1) -> str:
    value = hl7.parse(message.er7).extract_field(segment_id, 1, number, 1, component, 1)
    assert isinstance(value, str)
    return value


# --------------------------------------------------------------------------- transliteration itself


@pytest.mark.parametrize(("text", "ascii_text"), [
    ("Zoë Núñez", "Zoe Nunez"), ("Straße", "Strasse"), ("Æsir Øster", "AEsir Oster"), ("Łódź", "Lodz"),
    ("Œuvre – “café”", 'OEuvre - "cafe"'), ("½ dose, 37 °C", "1/2 dose, 37 degC"), ("ﬁnal", "final"),
    ("Ǆemal", "DZemal"), ("张伟", "??"),
])
def test_ascii_transliteration_examples(text: str, ascii_text: str) -> None:
    assert transliterate(text, "ascii")[0] == ascii_text


def test_latin1_keeps_what_latin1_holds_and_transliterates_the_rest() -> None:
    assert transliterate("Zoë Núñez", "latin-1") == ("Zoë Núñez", True)
    assert transliterate("Łukasz Œ 5 €", "latin-1") == ("Lukasz OE 5 EUR", True)
    assert transliterate("李", "latin-1") == ("?", False)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_transliteration_always_fits_the_character_set(text: str) -> None:
    ascii_text, _ = transliterate(text, "ascii")
    ascii_text.encode("ascii")
    latin1_text, _ = transliterate(text, "latin-1")
    latin1_text.encode("latin-1")
    assert transliterate(ascii_text, "ascii") == (ascii_text, True)  # nothing left to change


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
def test_fitted_fields_never_gain_a_delimiter(text: str) -> None:
    """A fullwidth ＾ or ｜ decomposes to ^ or |: it must arrive escaped, never as a delimiter."""
    from mappings.er7.escape import escape, unescape

    seg = ["NTE", "1", "L", escape(text)]
    fit_segments([seg], None, "transliterate")
    seg[3].encode("ascii")
    parsed = hl7.parse(f"MSH|^~\\&|A|B|C|D|20260101000000||ORM^O01|1|P|2.3\rNTE|1|L|{seg[3]}\r")
    assert len(parsed.segment("NTE")) == 4
    assert unescape(seg[3]) == transliterate(text, "ascii")[0]


def test_msh18_empty_means_ascii_for_the_renderer_and_the_sender() -> None:
    assert python_codec(None) == python_codec("") == python_codec("ASCII") == "ascii"
    assert python_codec("8859/1") == "latin-1" and python_codec("UNICODE UTF-8") == "utf-8"
    endpoint = MllpEndpoint(host="h", port=2575)
    assert mllp_endpoint(endpoint, None).encoding == "ascii"


# --------------------------------------------------------------------------- in rendered messages


def test_an_ascii_site_gets_zoe_nunez_with_a_transliteration_issue() -> None:
    site = variant("site-a", charset=None)
    snapshot, record = journey("site-a", "journey-autologous")[0]
    messages, issues = render(_with_patient(snapshot, **ZOE), record, site)
    for message in messages:
        message.er7.encode("ascii")
        assert message.refused is None
    assert (_field(messages[0], "PID", 5, 1), _field(messages[0], "PID", 5, 2)) == ("Nunez", "Zoe")
    transliterated = [i for i in issues if i.code == "hl7v2-transliterated"]
    assert [(i.severity, i.path) for i in transliterated] == [("warning", "hl7v2.PID-5")]
    assert not {"Zoë", "Zoe", "Núñez", "Nunez"} & set(transliterated[0].message.replace(";", " ").split())


def test_no_phi_in_any_charset_issue() -> None:
    site = variant("site-b", charset_fallback="refuse")
    snapshot, record = journey("site-b", "journey-autologous")[0]
    note = "Zoë Núñez allergic to Ærosol"
    _, issues = render(_with_order(_with_patient(snapshot, **ZOE), note=note), record, site)
    charset = [i for i in issues if i.code.startswith("hl7v2-")]
    assert charset
    for issue in charset:
        for word in ("Zoë", "Zoe", "Núñez", "Nunez", "Ærosol", "Aerosol"):
            assert word not in issue.message and word not in issue.path


def test_latin1_site_keeps_latin1_letters_and_transliterates_the_rest() -> None:
    site = variant("site-a", charset="8859/1")
    snapshot, record = journey("site-a", "journey-autologous")[0]
    patient = {"family": "Núñez-Łukasiewicz", "given": ["Zoë"]}
    messages, issues = render(_with_patient(snapshot, **patient), record, site)
    assert _field(messages[0], "PID", 5, 1) == "Núñez-Lukasiewicz"
    assert _field(messages[0], "PID", 5, 2) == "Zoë"
    messages[0].er7.encode("latin-1")
    assert [i.path for i in issues if i.code == "hl7v2-transliterated"] == ["hl7v2.PID-5"]


def test_a_utf8_site_keeps_everything() -> None:
    snapshot, record = journey("site-a", "journey-autologous")[0]
    messages, issues = render(_with_patient(snapshot, **ZOE), record, profile("site-a"))
    assert _field(messages[0], "PID", 5, 1) == "Núñez"
    charset_codes = {"hl7v2-transliterated", "hl7v2-unrepresentable", "hl7v2-charset-refused"}
    assert not charset_codes & {i.code for i in issues}


def test_site_b_notes_reasons_and_provider_arrive_as_ascii() -> None:
    snapshot, record = next((s, r) for s, r in journey("site-b", "journey-autologous")
                            if r.type is EventType.order_on_hold)
    provider = snapshot.order.ordering_provider.model_copy(update={"family": "Ñúñez"})
    held = record.model_copy(update={"data": {"reason": "Révision médicale — ½ dose"}})
    snapshot = _with_order(_with_patient(snapshot, **ZOE), ordering_provider=provider)
    (message,), issues = render(snapshot, held, profile("site-b"))
    message.er7.encode("ascii")
    assert _field(message, "NTE", 3) == "Revision medicale - 1/2 dose"
    assert _field(message, "ORC", 12, 2) == "Nunez"
    assert {i.path for i in issues if i.code == "hl7v2-transliterated"} == {
        "hl7v2.ORC-12", "hl7v2.OBR-16", "hl7v2.NTE-3"}


def test_refuse_makes_the_message_unsendable_with_an_error_issue() -> None:
    site = variant("site-b", charset_fallback="refuse")
    snapshot, record = next((s, r) for s, r in journey("site-b", "journey-autologous")
                            if r.type is EventType.order_on_hold)
    held = record.model_copy(update={"data": {"reason": "Révision médicale"}})
    (message,), issues = render(snapshot, held, site)
    assert message.refused is not None and "NTE-3" in message.refused and "Révision" not in message.refused
    refused = [i for i in issues if i.code == "hl7v2-charset-refused"]
    assert [(i.severity, i.path) for i in refused] == [("error", "hl7v2.NTE-3")]
    assert "ORM^O01 was not sent" in refused[0].message
    # an ASCII reason on the same site is sent as usual
    (plain,), _ = render(snapshot, record, site)
    assert plain.refused is None


def test_an_identifier_is_never_transliterated_whatever_the_fallback() -> None:
    snapshot, record = journey("site-b", "journey-autologous")[0]
    messages, issues = render(_with_patient(snapshot, mrn="MRN-Ø42"), record, profile("site-b"))
    assert messages and all(m.refused is not None and "PID-3" in m.refused for m in messages)
    assert "MRN-O42" not in "".join(m.er7 for m in messages)  # never a look-alike of another patient's MRN
    refused = [i for i in issues if i.code == "hl7v2-charset-refused"]
    assert [(i.severity, i.path) for i in refused] == [("error", "hl7v2.PID-3")]
    assert "identifier" in refused[0].message


def test_preview_shows_the_transliteration_and_the_refusal() -> None:
    from gateway.cli.goldens import load_case
    from gateway.config import load_settings
    from gateway.intake.replay import replay_journey

    fixture = load_case(FIXTURES / "events" / "journey-cancelled.json").for_site("site-b")
    order = fixture.order.model_copy(update={"note": "Zoë's café"})
    steps = replay_journey(load_settings(), order, fixture.events[:1], placed_at=fixture.placed_at)
    refusing = variant("site-b", charset_fallback="refuse")
    for site, fallback in ((profile("site-b"), "transliterate"), (refusing, "refuse")):
        (placed, *_) = [s.to_json() for s in preview_steps(site, steps, load_terminology(), NOW)]
        (oml,) = [m for m in placed["hl7v2"] if m["message_type"] == "ORM^O01"]
        codes = {i["code"] for i in placed["issues"]}
        if fallback == "transliterate":
            assert "NTE|1|P|Zoe's cafe" in oml["segments"] and oml["refused"] is None
            assert "hl7v2-transliterated" in codes
        else:
            assert oml["refused"] and "hl7v2-charset-refused" in codes


# --------------------------------------------------------------------------- the profile


def _site_b_text(**replace: str) -> str:
    text = (FIXTURES / "profiles" / "site-b.yaml").read_text(encoding="utf-8")
    for old, new in replace.items():
        assert old in text
        text = text.replace(old, new)
    return text


def test_charset_fallback_is_validated_and_defaults_to_transliterate() -> None:
    assert profile("site-b").hl7v2.charset_fallback == "transliterate"
    with pytest.raises(ProfileInvalid) as bad:
        load_profile_text(_site_b_text(**{"  charset: null": "  charset: null\n  charset_fallback: drop"}))
    assert "hl7v2.charset_fallback" in str(bad.value.problems)


def test_profile_identifiers_must_fit_the_declared_character_set() -> None:
    with pytest.raises(ProfileInvalid) as bad:
        load_profile_text(_site_b_text(**{"receiving_facility: SITEB": "receiving_facility: SITÉB"}))
    assert "receiving_facility has characters outside ASCII (MSH-18 empty)" in "\n".join(bad.value.problems)
    latin1 = load_profile_text(_site_b_text(**{"receiving_facility: SITEB": "receiving_facility: SITÉB",
                                                "  charset: null": '  charset: "8859/1"'}))
    assert latin1.hl7v2.receiving_facility == "SITÉB"


def test_profile_codes_sent_in_hl7v2_must_fit_the_declared_character_set() -> None:
    with pytest.raises(ProfileInvalid) as bad:
        load_profile_text(_site_b_text(**{'local_code: "900101"': 'local_code: "900101-É"'}), "site-b.yaml")
    problems = "\n".join(bad.value.problems)
    assert "hl7v2: products.CART-CD19.local_code has characters outside ASCII (MSH-18 empty)" in problems
    with pytest.raises(ProfileInvalid):
        load_profile_text(_site_b_text(**{"code: CGT90": "code: CGT90Ö"}))
    # displays are text: they are transliterated at run time, not refused
    assert load_profile_text(_site_b_text(**{"display: ON HOLD}": "display: EN ATTENTE — MÉDICAL}"}))


def test_cli_preview_says_which_message_would_not_be_sent(tmp_path: Any) -> None:
    import json

    from typer.testing import CliRunner

    from gateway.cli.profile import profile_app

    draft = tmp_path / "site-b-refuse.yaml"
    draft.write_text(_site_b_text(**{"  charset: null": "  charset: null\n  charset_fallback: refuse"}),
                     encoding="utf-8")
    case = json.loads((FIXTURES / "events" / "journey-cancelled.json").read_text(encoding="utf-8"))
    case["order"]["note"], case["events"] = "Zoë Núñez café", case["events"][:1]
    order = tmp_path / "order.json"
    order.write_text(json.dumps(case, ensure_ascii=False), encoding="utf-8")
    result = CliRunner().invoke(profile_app, ["preview", "--profile", str(draft), "--order", str(order)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "(not sent: NTE-3 cannot be encoded in ASCII (MSH-18 empty) (charset_fallback: refuse))" in lines
    assert any(line.startswith("error hl7v2-charset-refused hl7v2.NTE-3: ") for line in lines)
