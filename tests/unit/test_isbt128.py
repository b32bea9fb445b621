"""ISBT 128 CoI and DIN: published check-character vectors, normal forms, precise refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from terminology.isbt128 import CHECK_ALPHABET, check_character, normalize_coi, normalize_din

COI_DATA = "CHA999923A1B2C3"
COI_NORMAL = "CHA999923A1B2C3M"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("CHA999923A1B2C3", "M"),  # the CoI vector
        ("A999921123456", "3"),  # ISBT 128 DIN vectors (ST-001)
        ("A999818123456", "N"),
        ("G123498654321", "H"),
    ],
)
def test_check_character_matches_published_vectors(data: str, expected: str) -> None:
    assert check_character(data) == expected


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("", "cannot compute a check character over no characters"),
        ("A99*921123456", "character 4 is '*'; only 0–9 and A–Z carry a check value"),
        ("a999921123456", "character 1 is 'a'; only 0–9 and A–Z carry a check value"),
    ],
)
def test_check_character_refuses_characters_without_a_value(data: str, reason: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        check_character(data)
    assert str(excinfo.value) == reason


@pytest.mark.parametrize(
    "raw",
    [
        COI_DATA,
        COI_NORMAL,
        "&/" + COI_DATA,
        "&/" + COI_NORMAL,
        "  " + COI_NORMAL + "\n",
    ],
)
def test_coi_spellings_share_one_normal_form(raw: str) -> None:
    assert normalize_coi(raw) == COI_NORMAL


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "must be 15 characters (CH, facility id, 2-digit year, 6-character sequence), "
             "or 16 with the check character; got 0"),
        ("CHA999923A1B2C", "must be 15 characters (CH, facility id, 2-digit year, 6-character sequence), "
                           "or 16 with the check character; got 14"),
        (COI_NORMAL + "M", "must be 15 characters (CH, facility id, 2-digit year, 6-character sequence), "
                           "or 16 with the check character; got 17"),
        ("&/CHA999923A1B2", "must be 15 characters after '&/' (CH, facility id, 2-digit year, "
                            "6-character sequence), or 16 with the check character; got 13"),
        ("&/&/" + COI_DATA, "must be 15 characters after '&/' (CH, facility id, 2-digit year, "
                            "6-character sequence), or 16 with the check character; got 17"),
        ("XHA999923A1B2C3", "characters 1–2 must be 'CH', got 'XH'"),
        ("chA999923A1B2C3", "characters 1–2 must be 'CH', got 'ch'"),
        ("&/CXA999923A1B2C3", "characters 1–2 after '&/' must be 'CH', got 'CX'"),
        ("CHO999923A1B2C3", "character 3 must be A–N, P–Z or 1–9, got 'O'"),
        ("CH0999923A1B2C3", "character 3 must be A–N, P–Z or 1–9, got '0'"),
        ("CHa999923A1B2C3", "character 3 must be A–N, P–Z or 1–9, got 'a'"),
        ("&/CHO999923A1B2C3", "character 3 after '&/' must be A–N, P–Z or 1–9, got 'O'"),
        ("CHA99X923A1B2C3", "character 6 must be a digit 0–9, got 'X'"),
        ("CHA9999Y3A1B2C3", "character 8 must be a digit 0–9, got 'Y'"),
        ("CHA999923a1B2C3", "character 10 must be A–Z or 0–9, got 'a'"),
        ("CHA9999 23A1B2C", "character 8 must be a digit 0–9, got ' '"),
        ("CHA999923A1B2C-", "character 15 must be A–Z or 0–9, got '-'"),
        ("CHA999923A1B2C3X", "check character is 'X', expected 'M'"),
        ("CHA999923A1B2C3m", "check character is 'm', expected 'M'"),
        ("&/CHA999923A1B2C3*", "check character is '*', expected 'M'"),
        ("A999921123456", "must be 15 characters (CH, facility id, 2-digit year, 6-character sequence), "
                          "or 16 with the check character; got 13"),
    ],
)
def test_malformed_coi_is_refused_with_a_precise_reason(raw: str, reason: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        normalize_coi(raw)
    assert str(excinfo.value) == reason


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("A999921123456", "A9999211234563"),
        ("A9999211234563", "A9999211234563"),
        ("A999818123456", "A999818123456N"),
        ("G123498654321", "G123498654321H"),
        (" G123498654321H ", "G123498654321H"),
    ],
)
def test_din_normal_form_appends_the_check_character(raw: str, normal: str) -> None:
    assert normalize_din(raw) == normal


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("A99992112345", "must be 13 characters (facility id, 2-digit year, 6-digit sequence), "
                         "or 14 with the check character, without flag characters; got 12"),
        ("A99992112345600", "must be 13 characters (facility id, 2-digit year, 6-digit sequence), "
                            "or 14 with the check character, without flag characters; got 15"),
        ("O999921123456", "character 1 must be A–N, P–Z or 1–9, got 'O'"),
        ("0999921123456", "character 1 must be A–N, P–Z or 1–9, got '0'"),
        ("a999921123456", "character 1 must be A–N, P–Z or 1–9, got 'a'"),
        ("A9999211234X6", "character 12 must be a digit 0–9, got 'X'"),
        ("AB99921123456", "character 2 must be a digit 0–9, got 'B'"),
        ("A9999211234564", "check character is '4', expected '3'"),
        ("=A999921123456", "character 1 must be A–N, P–Z or 1–9, got '='"),  # no data identifier
    ],
)
def test_malformed_din_is_refused_with_a_precise_reason(raw: str, reason: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        normalize_din(raw)
    assert str(excinfo.value) == reason


# --------------------------------------------------------------------------- properties

_FIN_FIRST = "ABCDEFGHIJKLMNPQRSTUVWXYZ123456789"
_DIGIT = "0123456789"
_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _chars(alphabet: str, n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=n, max_size=n)


coi_data = st.builds(
    lambda a, fin, year, seq: "CH" + a + fin + year + seq,
    _chars(_FIN_FIRST, 1), _chars(_DIGIT, 4), _chars(_DIGIT, 2), _chars(_ALNUM, 6),
)
din_data = st.builds(lambda a, rest: a + rest, _chars(_FIN_FIRST, 1), _chars(_DIGIT, 12))


@given(coi_data)
def test_every_well_formed_coi_normalizes_idempotently(data: str) -> None:
    normal = normalize_coi(data)
    assert normal[:15] == data and normal[15] in CHECK_ALPHABET
    assert normalize_coi(normal) == normal
    assert normalize_coi("&/" + normal) == normal


@given(din_data)
def test_every_well_formed_din_normalizes_idempotently(data: str) -> None:
    normal = normalize_din(data)
    assert normal[:13] == data
    assert normalize_din(normal) == normal


@given(coi_data, st.data())
def test_a_single_wrong_character_is_always_detected(data: str, draw: st.DataObject) -> None:
    """ISO/IEC 7064 mod 37-2 detects every single substitution: a mistyped CoI never passes."""
    normal = normalize_coi(data)
    position = draw.draw(st.integers(min_value=9, max_value=14))  # the sequence: any A–Z/0–9 is well formed
    replacement = draw.draw(st.sampled_from(_ALNUM).filter(lambda c: c != data[position]))
    typo = data[:position] + replacement + data[position + 1:]
    with pytest.raises(ValueError, match="check character is"):
        normalize_coi(typo + normal[15])


@given(din_data, st.data())
def test_adjacent_transpositions_are_always_detected(data: str, draw: st.DataObject) -> None:
    position = draw.draw(st.integers(min_value=1, max_value=11))
    swapped = data[:position] + data[position + 1] + data[position] + data[position + 2:]
    if swapped != data:
        assert check_character(swapped) != check_character(data)
