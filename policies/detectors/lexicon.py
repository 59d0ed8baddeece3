"""Small shared pieces for the context-driven detectors (dates of birth, names, addresses): character
classes built from Unicode data (``re`` has no ``\\p{Lu}``) and a helper for "is one of these words near".
"""

from __future__ import annotations

import re

# Every upper-case and every lower-case letter below U+0250 (Latin, Latin-1, Latin Extended-A/B): the
# scripts of the EU languages written in Latin letters. Built once from ``str.isupper``/``str.islower``.
UPPER = "".join(ch for ch in map(chr, range(0x41, 0x250)) if ch.isupper() and ch.isalpha())
LOWER = "".join(ch for ch in map(chr, range(0x61, 0x250)) if ch.islower() and ch.isalpha())
UPPER_CLASS = "[" + re.escape(UPPER) + "]"
LOWER_CLASS = "[" + re.escape(LOWER) + "]"
# A capitalised word: "Müller", "O'Neil", "Jean-Luc", "DUPONT" (all capitals too, as in French forms).
CAP_WORD = rf"{UPPER_CLASS}(?:{LOWER_CLASS}+|{UPPER_CLASS}+)?(?:[-'’]{UPPER_CLASS}?{LOWER_CLASS}+)*"


def words_pattern(words: list[str] | tuple[str, ...], *, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    """One compiled alternation of literal words or phrases, longest first, not glued to letters/digits
    on either side (a final '.' in an abbreviation such as ``geb.`` needs no boundary after it)."""
    parts = []
    for w in sorted(set(words), key=len, reverse=True):
        body = re.escape(w).replace(r"\ ", r"\s+")
        tail = "" if w.endswith((".", ":")) else r"(?![^\W_])"
        parts.append(body + tail)
    return re.compile(r"(?<![^\W_])(?:" + "|".join(parts) + ")", flags)
