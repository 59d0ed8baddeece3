"""The normalised view the built-in detectors match on, and the map back to the original text.

Personal data is written in many ways that mean the same to a reader: full-width or Arabic-Indic digits,
a zero-width space or soft hyphen inside a number, an en-dash or a narrow no-break space between groups.
The candidate patterns and validators speak ASCII, so they run on a *view* of the text in which

* web escapes are read as the characters they write (``%40``, ``&#52;``, ``&commat;``: :mod:`.escapes`), and
  the characters they write are then normalised as below,
* format characters (Unicode category Cf: zero-width space/joiners, soft hyphen, BOM, bidi marks) are removed,
* every Unicode decimal digit becomes its ASCII digit,
* every space separator (Zs: no-break, narrow no-break, figure, thin, ideographic ...) becomes ``" "``,
* every dash (Pd, and the minus sign) becomes ``"-"``,
* the ideographic full stops that separate a domain name's labels (``。``, ``｡``) become ``"."``,
* any other character whose NFKC form is ASCII becomes that form (full-width letters, ``＠``, ``＋`` ...),
* a combining mark (Mn, Mc, Me) that sits on no letter is removed: a run of them after an ASCII character
  that is not a letter (a digit, a space, a dash, a quote), after a character the view changes, or at the
  start (``4\u0300111``, ``DE89 \u20dd3704``). Marks on a letter are composed with it as NFC does, so text
  in NFD (macOS writes it) reads as in NFC (``ju\u0308rgen`` -> ``jürgen``); marks NFC leaves alone stay.

Spans found in the view are mapped back with :meth:`View.span`, so redaction replaces the original
characters (including any format characters inside the span, and the whole of an escape). Texts with nothing to
normalise (all ASCII,
the common case) are their own view at no cost.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from bisect import bisect_right
from collections.abc import Iterable
from functools import cache

from bastion.policies.detectors import escapes

#: Full stops that separate the labels of a domain name as "." does (UTS #46 maps them to it: a browser opens
#: "example\u3002com"): the ideographic and the halfwidth ideographic full stop. (The full-width one is NFKC's.)
IDEOGRAPHIC_FULL_STOPS = "\u3002\uff61"


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
    if ch in IDEOGRAPHIC_FULL_STOPS:
        return "."
    if unicodedata.decomposition(ch):
        nfkc = unicodedata.normalize("NFKC", ch)
        if nfkc != ch and nfkc.isascii():
            return nfkc
    return ch


# Code points that no Unicode version so far assigns (planes 4-13) or that are private use (planes 15-16):
# normal_char keeps them as they are, so changed_chars need not ask (a test compares with the full range).
UNASSIGNED_PLANES = ((0x40000, 0xE0000), (0xF0000, 0x110000))


#: ``bytes.translate`` table making ASCII capitals small (and leaving every other byte): for byte screens
#: that match words in any ASCII case with a case-sensitive, literal-led pattern.
ASCII_LOWER = bytes(range(65)) + bytes(range(97, 123)) + bytes(range(91, 256))


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
def combining_marks() -> frozenset[str]:
    """Every combining mark (categories Mn, Mc, Me): removed from the view where it sits on no letter."""
    return frozenset(
        chr(cp)
        for a, b in _ranges_to_ask()
        for cp in range(a, b)
        if unicodedata.category(chr(cp)) in ("Mn", "Mc", "Me")
    )


@cache
def screened_chars() -> frozenset[str]:
    """The characters whose presence means the view may differ from the text: those it changes, and every
    combining mark (whether one is removed, composed or left depends on what it follows: :class:`View`)."""
    return changed_chars() | combining_marks()


def char_class(chars: Iterable[int], extra: str = "") -> str:
    """A regex matching one of the code points (plus the class text ``extra``), fast: ``re`` tests a class
    of BMP characters with a bitmap, but one holding astral characters by walking its list of ranges, which
    for a Unicode category is thousands long (0.8 us a character). So the astral ranges are a second class,
    reached only by an astral character."""
    cps = sorted(chars)
    bmp = _ranges_class([cp for cp in cps if cp <= 0xFFFF], extra)
    astral = [cp for cp in cps if cp > 0xFFFF]
    if not astral:
        return bmp
    return rf"(?:{bmp}|(?=[\U00010000-\U0010ffff]){_ranges_class(astral)})"


def _ranges(cps: Iterable[int]) -> list[list[int]]:
    """Ascending code points as [first, last] runs."""
    ranges: list[list[int]] = []
    for cp in cps:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    return ranges


def _ranges_class(cps: list[int], extra: str = "") -> str:
    body = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in _ranges(cps))
    return f"[{body}{extra}]"


@cache
def _changed_pattern() -> re.Pattern[str]:
    """A changed character, or a run of combining marks (the view decides from what precedes it)."""
    changed = char_class(ord(c) for c in changed_chars())
    marks = char_class(ord(c) for c in combining_marks())
    return re.compile(f"(?P<escape>{escapes.PATTERN})|(?P<marks>{marks}+)|{changed}")


def needs_view(text: str) -> bool:
    """True when the view of ``text`` may differ from ``text`` (cheap for ASCII text without ``%`` or ``&``)."""
    return (not text.isascii() and not screened_chars().isdisjoint(text)) or escapes.occurs(text)


def _bare(text: str, i: int) -> bool:
    """Whether the combining marks starting at ``text[i]`` sit on no letter."""
    if i == 0:
        return True
    before = text[i - 1]
    return (before.isascii() and not before.isalpha()) or normal_char(before) != before


class View:
    """``text`` is the normalised view of ``original``; :meth:`span` maps a view span back."""

    __slots__ = ("_lens", "_oends", "_origs", "_starts", "original", "text")

    def __init__(self, original: str, *, identity: bool = False) -> None:
        """``identity``: the caller knows that nothing in ``original`` changes (skips the check)."""
        self.original = original
        # One entry per changed piece of the original (a character, an escape, a run of removed characters):
        # where its replacement starts in the view and how long it is, where the piece starts and ends in the
        # original. Arrays of machine integers, and a removal that follows another entry joins it: a line of
        # millions of escapes or format characters costs 32 bytes per entry, not hundreds.
        self._starts = array("q")
        self._lens = array("q")
        self._origs = array("q")
        self._oends = array("q")
        if identity or not needs_view(original):
            self.text = original
            return
        pieces: list[str] = []
        last = 0  # where the original's unchanged text resumes
        pos = 0  # length of the view so far
        for m in _changed_pattern().finditer(original):
            i, end = m.span()
            replaced: Iterable[tuple[int, int, str]]
            if m.lastgroup == "escape":
                replaced = (
                    (i + s, i + e, "".join(normal_char(c) for c in chars)) for s, e, chars in escapes.decode(m.group())
                )
            elif m.lastgroup != "marks":
                replaced = ((i, i + 1, normal_char(original[i])),)
            elif i == last or _bare(original, i):  # (right after an escape: on no letter of the text)
                replaced = ((i, end, ""),)
            else:  # marks on a letter: composed with it as NFC does, or left alone
                composed = unicodedata.normalize("NFC", original[i - 1 : end])
                if composed == original[i - 1 : end]:
                    continue
                replaced = ((i - 1, end, composed),)
            for k, k_end, repl in replaced:  # ascending pieces; the characters between them stay
                if k > last:
                    pieces.append(original[last:k])
                    pos += k - last
                elif not repl and self._oends:  # a removal right after another entry: it joins that entry
                    self._oends[-1] = k_end
                    last = k_end
                    continue
                if repl:
                    pieces.append(repl)
                self._starts.append(pos)
                self._lens.append(len(repl))
                self._origs.append(k)
                self._oends.append(k_end)
                pos += len(repl)
                last = k_end
        pieces.append(original[last:])
        self.text = "".join(pieces)

    @property
    def identity(self) -> bool:
        return not self._starts

    def _entry(self, x: int) -> int:
        """The last entry whose replacement starts at or before view position ``x`` (-1: none)."""
        return bisect_right(self._starts, x) - 1

    def source(self, x: int) -> int:
        """Position in the original of the character that became view character ``x``."""
        k = self._entry(x)
        if k < 0:
            return x
        if x < self._starts[k] + self._lens[k]:
            return self._origs[k]
        return x + self._oends[k] - self._starts[k] - self._lens[k]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the non-empty view span ``[start, end)``: a piece the view changed is taken
        whole (all of "&#64;", the zero-width space removed after a changed digit)."""
        if not self._starts:
            return start, end
        k = self._entry(end - 1)
        changed = k >= 0 and end - 1 < self._starts[k] + self._lens[k]  # the last character is a replacement
        stop = self._oends[k] if changed else self.source(end - 1) + 1
        marks = combining_marks()
        while stop < len(self.original) and self.original[stop] in marks:
            stop += 1  # a mark belongs to the character before it: "é" of "e\u0301" is redacted whole
        return self.source(start), stop


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
    """Matches the UTF-8 encoding of any of the :func:`screened_chars` (for screening raw lines)."""
    return re.compile(_trie_regex(sorted(ch.encode("utf-8") for ch in screened_chars())))


@cache
def hyperscan_class() -> bytes:
    """The :func:`screened_chars` as a Hyperscan character class (UTF-8 mode)."""
    ranges = _ranges(sorted(ord(c) for c in screened_chars()))
    body = "".join(f"\\x{{{a:x}}}" if a == b else f"\\x{{{a:x}}}-\\x{{{b:x}}}" for a, b in ranges)
    return f"[{body}]".encode("ascii")


@cache
def _not_lead_bytes() -> bytes:
    leads = {ch.encode("utf-8")[0] for ch in screened_chars()}
    return bytes(b for b in range(256) if b not in leads)


def raw_needs_view(raw: bytes) -> bool:
    """:func:`needs_view` on the UTF-8 bytes of a text. Most non-ASCII text (accented letters, most
    scripts) holds no first byte of a screened character: ``bytes.translate`` rules that out at memory
    speed, and only the rest is searched with the exact pattern."""
    if escapes.occurs_in_bytes(raw):
        return True
    if raw.isascii() or not raw.translate(None, _not_lead_bytes()):
        return False
    return changed_bytes_pattern().search(raw) is not None
