"""Characters written as web escapes: percent-encoding (``anna%40example.com``, ``4111%201111``) and HTML
character references (``&#52;&#49;&#49;&#49;``, ``&#x40;``, ``&commat;``, ``&nbsp;``).

Text copied from URLs and web pages carries personal data in these forms, and an attacker can write any
character so: a browser shows ``&#52;&#49;&#49;&#49;`` as ``4111``, and a model trained on the escapes learns
the data as well. The normalised view (:mod:`.normalize`) reads each escape as the character it stands for.

* A run of ``%XX`` is read as UTF-8 bytes ("%C3%BC" is one "ü"); a byte sequence that is no valid UTF-8
  character stays as it is written.
* ``&#NNN;`` and ``&#xHHH;`` are read with or without the ``;`` (as browsers do), named references (the HTML5
  list, from :mod:`html.entities`) only with it (``&copy`` in prose is not taken).
* Control characters, surrogates and unassigned code points are not read (a ``%00`` must not become the NUL
  that separates the strings of a record in the engine), nor is an escape whose character is ``%`` or ``&``
  read again: each escape is decoded once, so ``&amp;#64;`` reads as ``&#64;`` and ``%2540`` as ``%40``.
"""

from __future__ import annotations

import html.entities
import re
import unicodedata

_PERCENT_RUN = r"(?:%[0-9A-Fa-f]{2})+"
_NUMERIC = r"&#(?:[0-9]{1,7}|[xX][0-9A-Fa-f]{1,6});?"
_NAMED = r"&[A-Za-z][A-Za-z0-9]{1,31};"
#: An escape (a whole run of ``%XX``); ASCII only, no lookaround.
PATTERN = f"{_PERCENT_RUN}|{_NUMERIC}|{_NAMED}"
_ESCAPE = re.compile(PATTERN)
_ESCAPE_BYTES = re.compile(PATTERN.encode("ascii"))
#: For Hyperscan: the start of every escape (a necessary condition for :data:`PATTERN`).
HS_PATTERN = rb"%[0-9A-Fa-f]{2}|&#[0-9xX]|&[A-Za-z][A-Za-z0-9]{1,31};"

_NOT_READ = frozenset({"Cc", "Cs", "Cn"})
# UTF-8 lead bytes by their top five bits: 0xxxx one byte, 110xx two, 1110x three, 11110 four
_UTF8_SIZE = {**dict.fromkeys(range(16), 1), **dict.fromkeys(range(24, 28), 2), 28: 3, 29: 3, 30: 4}


def occurs(text: str) -> bool:
    """Whether ``text`` holds an escape (cheap when it has no ``%`` and no ``&``)."""
    return ("%" in text or "&" in text) and _ESCAPE.search(text) is not None


def occurs_in_bytes(data: bytes) -> bool:
    """:func:`occurs` on UTF-8 bytes."""
    return (b"%" in data or b"&" in data) and _ESCAPE_BYTES.search(data) is not None


def _readable(ch: str) -> bool:
    return ch not in "%&" and unicodedata.category(ch) not in _NOT_READ


def decode(escape: str) -> list[tuple[int, int, str]]:
    """The characters an :data:`PATTERN` match writes, as ``(start, end, character)`` with the span in
    ``escape`` that writes it; the parts that write nothing readable are left out."""
    if escape[0] == "%":
        return _percent_run(escape)
    if escape[1] == "#":
        digits = escape[2:].rstrip(";")
        code = int(digits[1:], 16) if digits[:1] in ("x", "X") else int(digits)
        if code > 0x10FFFF:
            return []
        ch = chr(code)
        return [(0, len(escape), ch)] if _readable(ch) else []
    chars = html.entities.html5.get(escape[1:])
    if chars is None or not all(_readable(c) for c in chars):
        return []
    return [(0, len(escape), chars)]


def _percent_run(escape: str) -> list[tuple[int, int, str]]:
    data = bytes.fromhex(escape.replace("%", ""))
    out: list[tuple[int, int, str]] = []
    i = 0
    while i < len(data):
        lead = data[i]
        size = _UTF8_SIZE.get(lead >> 3, 0)  # the bytes of the character this lead byte starts
        if size:
            try:
                ch = data[i : i + size].decode("utf-8")
            except UnicodeDecodeError:
                ch = ""
            if len(ch) == 1 and _readable(ch):
                out.append((3 * i, 3 * (i + size), ch))
                i += size
                continue
        i += 1
    return out
