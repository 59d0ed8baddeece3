"""The normalised view the built-in detectors match on, and the map back to the original text.

Personal data is written in many ways that mean the same to a reader: full-width or Arabic-Indic digits,
a zero-width space or soft hyphen inside a number, an en-dash or a narrow no-break space between groups.
The candidate patterns and validators speak ASCII, so they run on a *view* of the text in which

* format characters (Unicode category Cf: zero-width space/joiners, soft hyphen, BOM, bidi marks) are removed,
* every Unicode decimal digit becomes its ASCII digit,
* every space separator (Zs: no-break, narrow no-break, figure, thin, ideographic ...) becomes ``" "``,
* every dash (Pd, and the minus sign) becomes ``"-"``,
* any other character whose NFKC form is ASCII becomes that form (full-width letters, ``＠``, ``＋`` ...).

Spans found in the view are mapped back with :meth:`View.span`, so redaction replaces the original
characters (including any format characters inside the span). Texts with nothing to normalise (all ASCII,
the common case) are their own view at no cost.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from functools import cache


def normal_char(ch: str) -> str:
    """What one character becomes in the view (``ch`` itself when nothing changes)."""
    if ch.isascii():
        return ch
    cat = unicodedata.category(ch)
    if cat == "Cf":
        return ""
    digit = unicodedata.decimal(ch, None)
    if digit is not None:
        return str(digit)
    if cat == "Zs":
        return " "
    if cat == "Pd" or ch == "\u2212":
        return "-"
    if unicodedata.decomposition(ch):
        nfkc = unicodedata.normalize("NFKC", ch)
        if nfkc != ch and nfkc.isascii():
            return nfkc
    return ch


# Code points that no Unicode version so far assigns (planes 4-13) or that are private use (planes 15-16):
# normal_char keeps them as they are, so changed_chars need not ask (a test compares with the full range).
UNASSIGNED_PLANES = ((0x40000, 0xE0000), (0xF0000, 0x110000))


@cache
def changed_chars() -> frozenset[str]:
    """Every character :func:`normal_char` changes (computed once, on first use: about 0.3 s)."""
    return frozenset(changed_in(_ranges_to_ask()))


def _ranges_to_ask() -> list[tuple[int, int]]:
    out, lo = [], 0x80
    for a, b in ((0xD800, 0xE000), *UNASSIGNED_PLANES):  # lone surrogates (from \\ud800 escapes) stay as they are
        out.append((lo, a))
        lo = b
    if lo < 0x110000:
        out.append((lo, 0x110000))
    return out


def changed_in(ranges: list[tuple[int, int]]) -> list[str]:
    """The characters of some code point ranges that :func:`normal_char` changes."""
    out = []
    for a, b in ranges:
        for cp in range(a, b):
            ch = chr(cp)
            if normal_char(ch) != ch:
                out.append(ch)
    return out


@cache
def _changed_pattern() -> re.Pattern[str]:
    ranges: list[list[int]] = []
    for cp in sorted(ord(c) for c in changed_chars()):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)
    return re.compile(f"[{body}]")


def needs_view(text: str) -> bool:
    """True when the view of ``text`` differs from ``text`` (cheap for ASCII text)."""
    return not text.isascii() and not changed_chars().isdisjoint(text)


class View:
    """``text`` is the normalised view of ``original``; :meth:`span` maps a view span back."""

    __slots__ = ("_deltas", "_lens", "_origs", "_starts", "original", "text")

    def __init__(self, original: str, *, identity: bool = False) -> None:
        """``identity``: the caller knows that nothing in ``original`` changes (skips the check)."""
        self.original = original
        # One entry per changed character: where its replacement starts in the view, how long it is, where
        # the character is in the original; and the offset (original - view) of the unchanged text after it.
        self._starts: list[int] = []
        self._lens: list[int] = []
        self._origs: list[int] = []
        self._deltas: list[int] = []
        if identity or not needs_view(original):
            self.text = original
            return
        pieces: list[str] = []
        last = 0
        pos = 0  # length of the view so far
        for m in _changed_pattern().finditer(original):
            i = m.start()
            pieces.append(original[last:i])
            pos += i - last
            repl = normal_char(original[i])
            pieces.append(repl)
            self._starts.append(pos)
            self._lens.append(len(repl))
            self._origs.append(i)
            pos += len(repl)
            self._deltas.append(i + 1 - pos)
            last = i + 1
        pieces.append(original[last:])
        self.text = "".join(pieces)

    @property
    def identity(self) -> bool:
        return not self._starts

    def source(self, x: int) -> int:
        """Position in the original of the character that became view character ``x``."""
        k = bisect_right(self._starts, x) - 1
        if k < 0:
            return x
        if x < self._starts[k] + self._lens[k]:
            return self._origs[k]
        return x + self._deltas[k]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the non-empty view span ``[start, end)``."""
        if not self._starts:
            return start, end
        return self.source(start), self.source(end - 1) + 1


def _trie_regex(seqs: list[bytes]) -> bytes:
    """A bytes regex matching exactly the given byte sequences (all of the same length per first byte),
    written as a trie so that ``re`` decides with a few byte tests per position."""
    groups: dict[int, list[bytes]] = {}
    for seq in seqs:
        groups.setdefault(seq[0], []).append(seq[1:])
    alts: list[bytes] = []
    singles = sorted(first for first, rests in groups.items() if rests == [b""])
    for first, rests in sorted(groups.items()):
        if rests == [b""]:
            continue
        alts.append(re.escape(bytes([first])) + _trie_regex([r for r in rests if r]))
    if singles:
        alts.append(b"[" + b"".join(re.escape(bytes([b])) for b in singles) + b"]")
    return alts[0] if len(alts) == 1 else b"(?:" + b"|".join(alts) + b")"


@cache
def changed_bytes_pattern() -> re.Pattern[bytes]:
    """Matches the UTF-8 encoding of any character the view changes (for screening raw lines)."""
    return re.compile(_trie_regex(sorted(ch.encode("utf-8") for ch in changed_chars())))


@cache
def hyperscan_class() -> bytes:
    """The characters the view changes, as a Hyperscan character class (UTF-8 mode)."""
    ranges: list[list[int]] = []
    for cp in sorted(ord(c) for c in changed_chars()):
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)
    return f"[{body}]".encode("ascii")


@cache
def _not_lead_bytes() -> bytes:
    leads = {ch.encode("utf-8")[0] for ch in changed_chars()}
    return bytes(b for b in range(256) if b not in leads)


def raw_needs_view(raw: bytes) -> bool:
    """:func:`needs_view` on the UTF-8 bytes of a text. Most non-ASCII text (accented letters, most
    scripts) holds no first byte of a changed character: ``bytes.translate`` rules that out at memory
    speed, and only the rest is searched with the exact pattern."""
    if raw.isascii() or not raw.translate(None, _not_lead_bytes()):
        return False
    return changed_bytes_pattern().search(raw) is not None
