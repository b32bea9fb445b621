"""HL7v2 character sets (MSH-18, HL7 table 0211): the Python codec of each, how issues name it, and
whether a text fits.  The profile checks its templates against them; ``mappings.hl7v2.charset``
fits rendered text to them.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["CharsetFallback", "python_codec", "charset_label", "encodable"]


CharsetFallback = Literal["transliterate", "refuse"]


_CODECS: Final = {"": "ascii", "ASCII": "ascii", "8859/1": "latin-1", "UNICODE": "utf-8",
                  "UNICODE UTF-8": "utf-8"}


def python_codec(charset: str | None) -> str:
    """The Python codec for an MSH-18 value: ``ascii`` when MSH-18 is empty (the HL7 default)."""
    return _CODECS.get(charset or "", "utf-8")


def charset_label(charset: str | None) -> str:
    """How issues name the character set: ``ASCII (MSH-18 empty)``, ``8859/1``."""
    return f"{charset} (MSH-18)" if charset else "ASCII (MSH-18 empty)"


def encodable(text: str, codec: str) -> bool:
    """True if ``text`` can be encoded with ``codec``."""
    if codec == "utf-8" or text.isascii():
        return True
    try:
        text.encode(codec)
    except UnicodeEncodeError:
        return False
    return True
