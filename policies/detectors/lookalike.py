"""Numbers with letters that look like digits: "O2O 7946 O958", "4lll 1lll 1lll 1lll".

Typing the letter O for a zero or a small L (or a capital I) for a one keeps a number readable to a person and
hides it from a detector that reads digits. A run of digits and these letters, in groups with the separators
of a number, is read with the letters as the digits they look like when at least one letter stands right
beside a digit ("O2", "4l": the mark of such a number, and the necessary condition the pre-filters look for);
the engine then validates it as a digit run in place (``PolicyEngine._lookalike_run``). A group of one or two
letters at either end is not part of it (the pronoun "I" before "1O2O ..."), nor is a group glued to other
letters ("Hello").
"""

from __future__ import annotations

import re
from typing import NamedTuple

from stdnum import numdb

LETTERS = "OoIl"
AS_DIGITS = str.maketrans("OoIl", "0011")
_SEP = r"[ ._/()\-]"
#: A look-alike letter right beside a digit: a necessary condition for a run this module reads.
ADJACENT = r"[0-9][OoIl]|[OoIl][0-9]"
#: The run: digits and look-alike letters, up to two separators between them, at least seven characters,
#: with :data:`ADJACENT` within the next 80 of them (so the pattern, like a run this module reads, never
#: matches where the pre-filters' screens see no such pair; 80 bounds the look-ahead, and a number of 19
#: digits with two separators between each is shorter). No lookbehind and no character JSON escapes (the
#: raw-line fast path relies on it, see ``candidates.py``).
PATTERN = rf"(?=[0-9OoIl ._/()\-+]{{0,80}}?(?:{ADJACENT}))\+?[0-9OoIl](?:{_SEP}{{0,2}}[0-9OoIl]){{6,}}"
_ADJACENT = re.compile(ADJACENT)
_GROUP = re.compile(r"\+?[0-9OoIl]+")
MIN_CHARACTERS = 7
#: An IBAN with look-alike letters among its digits, its bank code's letters breaking the run PATTERN reads
#: ("GBO4 VFDZ 4956 2553 5285 43", "GB85HBFL56l34227733O87"): from its country code, with :data:`ADJACENT`
#: within the next 40 characters (as for PATTERN: the pre-filters' condition).
IBAN_PATTERN = rf"[A-Z]{{2}}(?=[A-Za-z0-9 .\-]{{0,40}}?(?:{ADJACENT}))[0-9OIl]{{2}}(?:[ .\-]?[A-Za-z0-9]){{11,30}}"
#: A Spanish NIE or an Italian codice fiscale with look-alike letters where its digits stand ("Yl979229R",
#: "STGFRC69H4lD872K"): its letters break the runs PATTERN reads. :data:`ADJACENT` within the code, as above.
ALNUM_PATTERN = (
    rf"[A-Z](?=[A-Za-z0-9\-]{{0,16}}?(?:{ADJACENT}))"
    r"(?:[0-9OIl]{7}-?[A-Za-z]|[A-Z]{5}[0-9OIl]{2}[A-Z][0-9OIl]{2}[A-Z][0-9OIl]{3}[A-Z])"
)
# where the digits stand in each form (as written, the NIE with or without its dash): the rest stay letters
_ALNUM_DIGITS = {9: range(1, 8), 10: range(1, 8), 16: (6, 7, 9, 10, 12, 13, 14)}
_IBAN_DB = numdb.get("iban")
_BBAN_PART = re.compile(r"([1-9][0-9]*)!([nac])")  # the registry's BBAN format: "4!a6!n8!n"


class Lookalike(NamedTuple):
    """The run ``text[start:end]`` read with its letters as digits (``number``, as long as the run)."""

    start: int
    end: int
    number: str


def may_occur(text: str) -> bool:
    """False when no run this module reads can occur in ``text`` (a screen where Hyperscan's kind gate is
    not there to ask)."""
    return _ADJACENT.search(text) is not None


def _word(text: str, start: int, end: int) -> bool:
    """Whether the group ``text[start:end]`` is one or two letters and no digit: a word beside the number
    ("I", "lo"), not a part of it ("4III-IIII-..." keeps its groups of four)."""
    return end - start <= 2 and not any(c.isdigit() for c in text[start:end])


def read(text: str, start: int, end: int) -> Lookalike | None:
    """The number in the :data:`PATTERN` match ``text[start:end]``, or None when what is left of it after
    dropping its end groups that are words or glued to letters has fewer than :data:`MIN_CHARACTERS` digits
    and letters, or no letter right beside a digit."""
    groups = [m.span() for m in _GROUP.finditer(text, start, end)]
    while groups and (_word(text, *groups[0]) or (groups[0][0] > 0 and text[groups[0][0] - 1].isalnum())):
        groups.pop(0)
    while groups and (_word(text, *groups[-1]) or (groups[-1][1] < len(text) and text[groups[-1][1]].isalnum())):
        groups.pop()
    if not groups:
        return None
    s, e = groups[0][0], groups[-1][1]
    run = text[s:e]
    if sum(c.isdigit() or c in LETTERS for c in run) < MIN_CHARACTERS or not _ADJACENT.search(run):
        return None
    return Lookalike(s, e, run.translate(AS_DIGITS))


def iban_readings(text: str, start: int, end: int) -> list[tuple[str, int]]:
    """For the :data:`IBAN_PATTERN` match ``text[start:end]``: the IBANs it may be with its look-alike letters
    read as digits where its country's format has digits (the check digits, and ``n`` in the BBAN format of
    the IBAN registry; then ``c`` too, where letters and digits may both stand), each with where it ends in
    ``text``. Empty when the country is unknown, the match is glued to a letter or digit, or too short."""
    if start > 0 and text[start - 1].isalnum():
        return []
    info = _IBAN_DB.info(text[start : start + 2] + "00")
    bban = info[0][1].get("bban") if info else None
    if not bban:
        return []
    kinds = "nn" + "".join(kind * int(count) for count, kind in _BBAN_PART.findall(bban))
    places = [i for i in range(start + 2, end) if text[i].isalnum()][: len(kinds)]
    if len(places) < len(kinds):
        return []
    stop = places[-1] + 1
    if stop < len(text) and text[stop].isalnum():
        return []  # the last character is not the end of what is written
    written = [text[i] for i in places]
    out: list[tuple[str, int]] = []
    for digits_in in ("n", "nc"):
        number = "".join(c.translate(AS_DIGITS) if k in digits_in else c for c, k in zip(written, kinds, strict=True))
        reading = text[start : start + 2] + number
        if number != "".join(written) and (reading, stop) not in out:
            out.append((reading, stop))
    return out


def alnum_reading(text: str, start: int, end: int) -> str | None:
    """The :data:`ALNUM_PATTERN` match ``text[start:end]`` with its look-alike letters read as digits where the
    code's digits stand (None when it is glued to a letter or digit, or reads as it is written)."""
    if (start > 0 and text[start - 1].isalnum()) or (end < len(text) and text[end].isalnum()):
        return None
    code = text[start:end]
    places = _ALNUM_DIGITS[len(code)]
    reading = "".join(c.translate(AS_DIGITS) if i in places else c for i, c in enumerate(code))
    return reading if reading != code else None
