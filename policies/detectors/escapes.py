"""Characters written as web escapes: percent-encoding (``anna%40example.com``, ``4111%201111``), HTML
character references (``&#52;&#49;&#49;&#49;``, ``&#x40;``, ``&commat;``, ``&nbsp;``) and Markdown's
backslash escapes (``anna\\_berg@example.com``, ``4111\\-1111``).

Text copied from URLs and web pages carries personal data in these forms, and an attacker can write any
character so: a browser shows ``&#52;&#49;&#49;&#49;`` as ``4111``, and a model trained on the escapes learns
the data as well. The normalised view (:mod:`.normalize`) reads each escape as the character it stands for.

* ``%XX`` escapes are read as UTF-8 bytes ("%C3%BC" is one "ü"); a byte sequence that is no valid UTF-8
  character stays as it is written.
* ``&#NNN;`` and ``&#xHHH;`` are read with or without the ``;`` (as browsers do), named references (the HTML5
  list, from :mod:`html.entities`) only with it (``&copy`` in prose is not taken).
* A backslash before ASCII punctuation is read as the punctuation, as Markdown shows it (editors and chat
  exports escape the ``_`` and ``.`` of e-mail addresses so), except before ``"`` and ``\\`` (in a raw JSON
  line every escaped quote and backslash would look like one).
* Control characters, surrogates and unassigned code points are not read (a ``%00`` must not become the NUL
  that separates the strings of a record in the engine), nor is an escape whose character is ``%`` or ``&``
  read again: each escape is decoded once, so ``&amp;#64;`` reads as ``&#64;`` and ``%2540`` as ``%40``.
"""

from __future__ import annotations

import html.entities
import re
import string
import unicodedata
from collections.abc import Iterator

# One character's bytes: a byte, then up to three continuation bytes (a whole run in one match would cost
# ``re`` a backtracking frame per byte: a line of millions of escapes took gigabytes)
_PERCENT_RUN = r"%[0-9A-Fa-f]{2}(?:%[89ABab][0-9A-Fa-f]){0,3}"
_NUMERIC = r"&#(?:[0-9]{1,7}|[xX][0-9A-Fa-f]{1,6});?"
_NAMED = r"&[A-Za-z][A-Za-z0-9]{1,31};"
_MARKDOWN = "\\\\[" + "".join("\\" + c for c in string.punctuation if c not in '"\\%&') + "]"
#: An escape (``%XX`` with the continuation bytes of its character); ASCII only, no lookaround.
PATTERN = f"{_PERCENT_RUN}|{_NUMERIC}|{_NAMED}|{_MARKDOWN}"
_ESCAPE = re.compile(PATTERN)
_ESCAPE_BYTES = re.compile(PATTERN.encode("ascii"))
#: For Hyperscan: the start of every escape (a necessary condition for :data:`PATTERN`).
HS_PATTERN = rb"%[0-9A-Fa-f]{2}|&#[0-9xX]|&[A-Za-z][A-Za-z0-9]{1,31};|" + _MARKDOWN.encode("ascii")

_NOT_READ = frozenset({"Cc", "Cs", "Cn"})
# UTF-8 lead bytes by their top five bits: 0xxxx one byte, 110xx two, 1110x three, 11110 four
_UTF8_SIZE = {**dict.fromkeys(range(16), 1), **dict.fromkeys(range(24, 28), 2), 28: 3, 29: 3, 30: 4}


def occurs(text: str) -> bool:
    """Whether ``text`` holds an escape (cheap when it has no ``%``, ``&`` or backslash)."""
    return ("%" in text or "&" in text or "\\" in text) and _ESCAPE.search(text) is not None


def occurs_in_bytes(data: bytes) -> bool:
    """:func:`occurs` on UTF-8 bytes."""
    return (b"%" in data or b"&" in data or b"\\" in data) and _ESCAPE_BYTES.search(data) is not None


def _readable(ch: str) -> bool:
    return ch not in "%&" and unicodedata.category(ch) not in _NOT_READ


def decode(escape: str) -> Iterator[tuple[int, int, str]]:
    """The characters an :data:`PATTERN` match writes, as ``(start, end, characters)`` with the span in
    ``escape`` that writes them, in order; the parts that write nothing readable are left out."""
    if escape[0] == "%":
        yield from _percent_run(escape)
        return
    if escape[0] == "\\":
        yield 0, 2, escape[1]
        return
    if escape[1] == "#":
        digits = escape[2:].rstrip(";")
        code = int(digits[1:], 16) if digits[:1] in ("x", "X") else int(digits)
        if code <= 0x10FFFF and _readable(chr(code)):
            yield 0, len(escape), chr(code)
        return
    chars = html.entities.html5.get(escape[1:])
    if chars is not None and all(_readable(c) for c in chars):
        yield 0, len(escape), chars


def _percent_run(escape: str) -> Iterator[tuple[int, int, str]]:
    data = bytes.fromhex(escape.replace("%", ""))
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
                yield 3 * i, 3 * (i + size), ch
                i += size
                continue
        i += 1
