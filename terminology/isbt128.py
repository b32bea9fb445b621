"""ISBT 128 identifiers used on the Chain of Identity: the CoI identifier and the DIN.

Pure functions, no I/O.  Each ``normalize_*`` returns the one stored normal form or raises
:class:`ValueError` whose message says exactly which character is wrong and why.

* **Chain of Identity identifier** (ICCBBA ST-028, data structure 040): 15 data characters
  ``CH`` + facility identification number (FIN, ``αpppp``) + 2-digit year + 6 characters A–Z/0–9,
  optionally prefixed by the ``&/`` data identifier and optionally followed by the keyboard check
  character.  Normal form: the 15 data characters followed by the check character (16 characters,
  no ``&/``).
* **Donation Identification Number** (data structure 001): 13 characters ``αppppyynnnnnn``
  (FIN, year, 6-digit sequence), optionally followed by its check character.  Normal form: the 13
  characters followed by the check character.  Flag characters are not part of the DIN here.

The keyboard check character is ISO/IEC 7064 mod 37-2 over the data characters, alphabet
``0-9A-Z*`` (values 0–36).
"""

from __future__ import annotations

__all__ = [
    "CHECK_ALPHABET",
    "COI_DATA_IDENTIFIER",
    "check_character",
    "normalize_coi",
    "normalize_din",
]

CHECK_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ*"
COI_DATA_IDENTIFIER = "&/"

_DIGITS = frozenset("0123456789")
_UPPER = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALNUM = _DIGITS | _UPPER
# The first FIN character: A–N, P–Z (no O, which reads as zero) or 1–9.
_FIN_FIRST = (_UPPER - {"O"}) | (_DIGITS - {"0"})

_FIN_FIRST_TEXT = "A–N, P–Z or 1–9"
_DIGIT_TEXT = "a digit 0–9"
_ALNUM_TEXT = "A–Z or 0–9"


def check_character(data: str) -> str:
    """The ISO/IEC 7064 mod 37-2 check character over ``data`` (characters 0–9 and A–Z only).

    >>> check_character("A999921123456")
    '3'
    """
    if not data:
        raise ValueError("cannot compute a check character over no characters")
    p = 0
    for position, char in enumerate(data, start=1):
        if char not in _ALNUM:
            raise ValueError(f"character {position} is {char!r}; only 0–9 and A–Z carry a check value")
        p = ((p + CHECK_ALPHABET.index(char)) * 2) % 37
    return CHECK_ALPHABET[(38 - p) % 37]


def _expect(data: str, position: int, allowed: frozenset[str], text: str, where: str) -> None:
    char = data[position - 1]
    if char not in allowed:
        raise ValueError(f"character {position}{where} must be {text}, got {char!r}")


def _verified(data: str, given_check: str | None) -> str:
    expected = check_character(data)
    if given_check is not None and given_check != expected:
        raise ValueError(f"check character is {given_check!r}, expected {expected!r}")
    return data + expected


def normalize_coi(raw: str) -> str:
    """The normal form of an ISBT 128 Chain of Identity identifier (15 data characters + check).

    Surrounding whitespace is ignored; anything else that deviates is refused.

    >>> normalize_coi("&/CHA999923A1B2C3")
    'CHA999923A1B2C3M'
    """
    text = raw.strip()
    prefixed = text.startswith(COI_DATA_IDENTIFIER)
    body = text[len(COI_DATA_IDENTIFIER):] if prefixed else text
    where = f" after {COI_DATA_IDENTIFIER!r}" if prefixed else ""
    if len(body) not in (15, 16):
        raise ValueError(
            f"must be 15 characters{where} (CH, facility id, 2-digit year, 6-character sequence), "
            f"or 16 with the check character; got {len(body)}"
        )
    data, given_check = body[:15], (body[15] if len(body) == 16 else None)
    if data[:2] != "CH":
        raise ValueError(f"characters 1–2{where} must be 'CH', got {data[:2]!r}")
    _expect(data, 3, _FIN_FIRST, _FIN_FIRST_TEXT, where)
    for position in range(4, 10):  # FIN digits 4–7, year 8–9
        _expect(data, position, _DIGITS, _DIGIT_TEXT, where)
    for position in range(10, 16):
        _expect(data, position, _ALNUM, _ALNUM_TEXT, where)
    return _verified(data, given_check)


def normalize_din(raw: str) -> str:
    """The normal form of an ISBT 128 Donation Identification Number (13 characters + check).

    >>> normalize_din("G123498654321")
    'G123498654321H'
    """
    text = raw.strip()
    if len(text) not in (13, 14):
        raise ValueError(
            "must be 13 characters (facility id, 2-digit year, 6-digit sequence), "
            f"or 14 with the check character, without flag characters; got {len(text)}"
        )
    data, given_check = text[:13], (text[13] if len(text) == 14 else None)
    _expect(data, 1, _FIN_FIRST, _FIN_FIRST_TEXT, "")
    for position in range(2, 14):
        _expect(data, position, _DIGITS, _DIGIT_TEXT, "")
    return _verified(data, given_check)
