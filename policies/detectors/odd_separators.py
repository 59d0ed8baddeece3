"""Card numbers written with separators no number uses: "4111*1111*1111*1111", "4111 | 1111 | 1111 | 1111".

The digit-run candidates take spaces, dots, dashes, slashes, underscores and brackets between digit groups;
any other separator split a card number into groups too short to be anything. Here a run of digit groups
joined by these separators (and the usual ones), with at least one odd separator right between two groups of
four digits (the pre-filters' condition), is read with every odd separator as a space, one character for one,
and asked of the card detector (``PolicyEngine._odd_separator_run``): a card's issuer prefix, length and
Luhn check make a chance hit rare, where a phone or id reading of lists of numbers would not be. A run right
after two letters, or after the first groups of an IBAN ("GB17*FGRX*" before "1341*3847*..."), is also asked
of the IBAN detector from its country code on ("DE89*3704*0044*0532*0130*00"; its country, length and mod-97
check are rarer still).

A phone number led by its international prefix ("+34~887~321~455") is read the same way, as the phone
detector alone reads it (the '+' and the country code make a list rare): a run of its own kind,
``odd_phone``. A national number ("tel 08~847~00~52", "phone 020|7946|0958", "Tel.: (07132)\n64950") is read
only after a word for a phone, without the separators of lists and times (:data:`NATIONAL_ODD`: not commas,
semicolons or colons), as the phone detector reads it in its place (it sees the word): kind
``odd_national_phone``. Breaks are read there: after the word, the digit pass already takes the same groups
with spaces between them.

Commas and semicolons also separate lists and CSV fields ("4000,4001,4002,4003" passes Luhn one time in ten):
written with them, a card counts only after a card word ("card", "Karte", "visa", ...). So do the characters
that break a line or a cell (tab, newline, carriage return, form feed, vertical tab, the ASCII information
separators, NEL, the Unicode line and paragraph separators: :data:`BREAKS`), which also put a number on each
line of a list; IBANs and phones with their '+' are read across them without a word.

JSON escapes most breaks (``\\t``, ``\\n``, ``\\r``, ``\\f``, ``\\u000b`` ...): in a raw JSONL line the candidate
patterns see a backslash and a letter where the decoded text has the break. A raw line with ``\\u`` already
takes the full path; one with :data:`ESCAPED_BREAK` (such an escape among the separators between two digits)
does too (``PolicyEngine.may_contain`` and the pre-filters).
"""

from __future__ import annotations

import re


def _class_body(chars: str) -> str:
    """``chars`` for a character class that both ``re`` and Hyperscan read alike: control characters as they
    are (``re.escape`` puts a backslash before them, which Hyperscan does not take as ``re`` does)."""
    return "".join("\\" + c if c in "\\]^-[" else c for c in chars)


#: Characters that break a line or a cell.
BREAKS = "\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\u2028\u2029"
ODD = ",*|~:;+#=\u2022\u00b7" + BREAKS  # (U+2022 bullet, U+00B7 middle dot)
ODD_CLASS = "[" + _class_body(ODD) + "]"
ANY_SEP = "[ ._/()\\-" + _class_body(ODD) + "]"
#: An odd separator (or two: "\\r\\n") between two groups of four digits (spaces around allowed): a necessary
#: condition for a card this module reads (every card form it takes has two such groups side by side).
ADJACENT = rf"[0-9]{{4}} ?{ODD_CLASS}{{1,2}} ?[0-9]{{4}}"
#: In a raw JSON line: a break JSON escapes as a letter (``\\t``, ``\\n``, ``\\r``, ``\\f``) among the separators
#: between two digits (at most three, as in the runs of :data:`PATTERN` and :data:`PHONE_PATTERN`). The other
#: breaks below U+0020 are escaped as ``\\u00XX`` (the ``\\u`` screen); NEL and U+2028/9 may stand as they are.
#: As text (for ``re`` on the raw line) and as UTF-8 bytes (for ``re`` and Hyperscan on its bytes).
_RAW_SEPARATORS = " ._/()-,*|~:;+#=\u2022\u00b7\x85\u2028\u2029"
_ESCAPE = r"\\[tnrf]"
_RAW_SEP = "(?:" + "|".join(re.escape(c) for c in _RAW_SEPARATORS) + "|" + _ESCAPE + ")"
ESCAPED_BREAK = rf"[0-9]{_RAW_SEP}{{0,2}}{_ESCAPE}{_RAW_SEP}{{0,2}}[0-9]"
_RAW_SEP_BYTES = b"(?:" + b"|".join(re.escape(c.encode()) for c in _RAW_SEPARATORS) + b"|" + _ESCAPE.encode() + b")"
ESCAPED_BREAK_BYTES = rb"[0-9]" + _RAW_SEP_BYTES + rb"{0,2}" + _ESCAPE.encode() + _RAW_SEP_BYTES + rb"{0,2}[0-9]"
#: The run: digit groups joined by one to three separators, with :data:`ADJACENT` within the next 80
#: characters (so the pattern, like a card this module reads, never matches where the pre-filters' screens
#: see no such pair; 80 bounds the look-ahead, and a card of 19 digits with three separators between each
#: group is shorter). No lookbehind and no character JSON escapes (the raw-line fast path relies on it, see
#: ``candidates.py``).
PATTERN = rf"(?=(?:{ANY_SEP}|[0-9]){{0,80}}?(?:{ADJACENT}))[0-9]{{1,6}}(?:{ANY_SEP}{{1,3}}[0-9]{{1,6}}){{2,7}}"
_ADJACENT = re.compile(ADJACENT)
_DIGIT_OR_USUAL = "[0-9 ._/()\\-]"  # a digit or a separator numbers use
#: The odd separators of a phone number: not "+", which starts the next international number.
PHONE_ODD = ODD.replace("+", "")
_PHONE_ODD_CLASS = "[" + _class_body(PHONE_ODD) + "]"
_PHONE_SEP = "[ ._/()\\-" + _class_body(PHONE_ODD) + "]"
#: A phone number with its international prefix written with odd separators ("+34~887~321~455", "+48 | 22 |
#: 580 | 33 | 71"): a '+' with an odd separator after it, no more than 24 digits and usual separators between
#: (the pre-filters' condition; the first odd separator of a run of :data:`PHONE_PATTERN` is so placed).
PHONE_ADJACENT = rf"\+[0-9]{_DIGIT_OR_USUAL}{{0,24}}?{_PHONE_ODD_CLASS}"
#: The phone's run: '+', the country code, digit groups joined by one to three separators. No lookbehind
#: and no character JSON escapes (see ``candidates.py``).
PHONE_PATTERN = (
    rf"\+(?=[0-9]{_DIGIT_OR_USUAL}{{0,24}}?{_PHONE_ODD_CLASS})[0-9]{{1,4}}(?:{_PHONE_SEP}{{1,3}}[0-9]{{1,12}}){{1,7}}"
)
_PHONE_ADJACENT = re.compile(PHONE_ADJACENT)
#: The odd separators of a national phone number (read only after a word for a phone): not those of lists
#: and times (",;:"), nor '+'.
NATIONAL_ODD = "*|~#=\u2022\u00b7" + BREAKS
_NATIONAL_ODD_CLASS = "[" + _class_body(NATIONAL_ODD) + "]"
_NATIONAL_SEP = "[ ._/()\\-" + _class_body(NATIONAL_ODD) + "]"
#: Two digits with one to three separators between them, one of them a national odd separator: the
#: pre-filters' condition (every reading of :data:`NATIONAL_PHONE_PATTERN` holds one).
NATIONAL_ADJACENT = rf"[0-9]{_NATIONAL_SEP}{{0,2}}{_NATIONAL_ODD_CLASS}{_NATIONAL_SEP}{{0,2}}[0-9]"
#: A national phone's run: digit groups joined by one to three separators (the first group may stand in
#: brackets), a national odd separator among them within its first 24 characters. No lookbehind, and of the
#: characters JSON escapes only the breaks, as in :data:`PATTERN` (see ``candidates.py``).
NATIONAL_PHONE_PATTERN = (
    rf"(?=\(?[0-9]{_DIGIT_OR_USUAL}{{0,24}}?{_NATIONAL_ODD_CLASS})"
    rf"\(?[0-9]{{1,5}}(?:{_NATIONAL_SEP}{{1,3}}[0-9]{{1,12}}){{1,7}}"
)
_NATIONAL_ADJACENT = re.compile(NATIONAL_ADJACENT)
NATIONAL_AS_SPACES = str.maketrans(dict.fromkeys(NATIONAL_ODD, " "))
#: The start of an IBAN right before a run: its country code and check digits, and up to four groups (letters
#: allowed: "GB17*FGRX*" before "1341*3847*..."), ending at the run (searched with ``endpos`` at its start).
IBAN_HEAD = re.compile(
    rf"(?<![^\W\d_])[A-Za-z]{{2}}[0-9]{{2}}(?:{ANY_SEP}{{1,3}}[A-Za-z0-9]{{1,6}}){{0,4}}{ANY_SEP}{{1,3}}[A-Za-z]{{0,5}}$"
)  # (with the letters of a group whose digits start the run: "IT25*W" before "030*6739*...")
AS_SPACES = str.maketrans(dict.fromkeys(ODD, " "))
LIST_SEPARATORS = frozenset(",;" + BREAKS)


def may_occur(text: str) -> bool:
    """False when no card this module reads can occur in ``text`` (where no Hyperscan kind gate asks)."""
    return _ADJACENT.search(text) is not None


def phone_may_occur(text: str) -> bool:
    """False when no phone this module reads can occur in ``text`` (where no Hyperscan kind gate asks)."""
    return "+" in text and _PHONE_ADJACENT.search(text) is not None


def national_phone_may_occur(text: str) -> bool:
    """False when no national phone this module reads can occur in ``text`` (where no Hyperscan kind gate
    asks)."""
    return _NATIONAL_ADJACENT.search(text) is not None


def has_national_separator(text: str) -> bool:
    """Whether ``text`` (a national phone's run) holds a national odd separator."""
    return any(c in NATIONAL_ODD for c in text)


def odd_separators(text: str) -> set[str]:
    """The odd separators in ``text`` (a run)."""
    return {c for c in text if c in ODD}


def has_phone_separator(text: str) -> bool:
    """Whether ``text`` (a phone's run after its '+') holds an odd separator."""
    return any(c in PHONE_ODD for c in text)
