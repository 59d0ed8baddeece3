"""One cheap pass telling which context detectors (names, street addresses, dates of birth) can find
anything in a text, so that their own (slower) passes run only where they can.

Each detector's gate is a *necessary condition* for its ``find`` to return a hit:

- street addresses: with Hyperscan, one of the detector's anchors (a street-type word, or a street suffix
  followed by a number: ``address.ANCHOR_WORDS`` / ``ANCHOR_SUFFIXES``); without it, a digit or "S/N"
  (the detector's own first test, ``address._QUICK``);
- dates of birth: with Hyperscan, a birth word or an age phrase (``dob.BIRTH_WORDS``, ``AGE_WORDS``,
  ``AGE_UNITS``: the detector looks for dates only around them); without it, a date-like shape (the
  detector's own first test, ``dob._YEARISH``);
- person names: a context word (any case, as the detector's word list matches it) followed by spaces,
  tabs, line breaks, ',' or '!' and then a capital letter (every context rule needs a capitalised word
  right there), or two capitalised words in a row (what the name lists are asked about).

The conditions are exact character-level rewrites of those patterns for texts whose characters all lie
below U+0250 (Latin scripts), minus U+0130, U+0131 and U+017F (whose case mappings change the length or
reach ASCII); any other text is handed to every detector. With Hyperscan installed the three conditions
are one multi-pattern scan of the text's UTF-8 bytes; without it, one ``re`` search per detector (the names'
context words are looked for in the text in small letters: :class:`_ContextWords`).
Results never depend on the gate (``PolicyEngine(context_gate=False)`` turns it off; tests compare both).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from bastion.policies.detectors.address import ANCHOR_SUFFIXES, ANCHOR_WORDS, StreetAddressDetector
from bastion.policies.detectors.base import Detector
from bastion.policies.detectors.dob import AGE_UNITS, AGE_WORDS, BIRTH_WORDS, DateOfBirthDetector
from bastion.policies.detectors.lexicon import UPPER
from bastion.policies.detectors.names import _CASED, _CASED_LOWER, _KIND, _PARTICLE, PersonNameDetector

_ODD = ("\u0130", "\u0131", "\u017f")
_CHARS = [chr(i) for i in range(0x250) if chr(i) not in _ODD]
_WS = [c for c in _CHARS if re.match(r"\s", c)]
_DIGITS = [str(d) for d in range(10)]


def _lower_to(ch: str) -> list[str]:
    """The characters (in range) whose lower case is ``ch``: what a lower-cased word list matches."""
    return list(_LOWER_TO.get(ch, ()))


_LOWER_TO: dict[str, list[str]] = {}
for _c in _CHARS:  # one pass over the range (asked per character of every word-list entry: tens of thousands)
    _LOWER_TO.setdefault(_c.lower(), []).append(_c)


class _Alt:
    """A set of characters, written as an ``re`` class (str) and as a byte alternation (Hyperscan)."""

    def __init__(self, chars: Iterable[str]) -> None:
        self.chars = sorted(set(chars))

    def text(self) -> str:
        return "[" + "".join(re.escape(c) for c in self.chars) + "]"

    def bytes(self) -> bytes:
        singles = [c for c in self.chars if c.isascii()]
        parts = []
        if singles:
            parts.append(b"[" + b"".join(b"\\x%02x" % ord(c) for c in singles) + b"]")
        for c in self.chars:
            if not c.isascii():
                parts.append(b"".join(b"\\x%02x" % b for b in c.encode("utf-8")))
        return b"(?:" + b"|".join(parts) + b")"


def _render(seq: Sequence[_Alt | str], native: bool) -> Any:
    """A pattern from pieces: character sets and raw regex operators (which are the same in both forms)."""
    if native:
        return b"".join(p.bytes() if isinstance(p, _Alt) else p.encode("ascii") for p in seq)
    return "".join(p.text() if isinstance(p, _Alt) else p for p in seq)


def _word(phrase: str) -> list[_Alt | str] | None:
    """A lower-cased word-list entry as the text may spell it (any case; runs of whitespace for spaces);
    None when it holds a character outside the gated range (then no gated text can hold it)."""
    out: list[_Alt | str] = []
    for ch in phrase:
        if ch == " ":
            out += [_Alt(_WS), "+"]
            continue
        chars = _lower_to(ch)
        if not chars:
            return None
        out.append(_Alt(chars))
    return out


def _pieces(given: frozenset[str], native: bool) -> dict[str, list[list[_Alt | str]]]:
    """The conditions per detector kind; ``given``: the given names of the name detectors' gazetteers."""
    digit, ws, up = _Alt(_DIGITS), _Alt(_WS), _Alt(UPPER)
    # The look-behind of the word lists (no letter or digit before a word), as a superset Hyperscan takes;
    # ``re`` takes the look-behind itself, which lets it skip to the word's first letter.
    start = "(?:^|[^A-Za-z0-9])" if native else "(?<![A-Za-z0-9])"
    address: list[list[_Alt | str]] = [[digit], [_Alt("Ss"), "/", _Alt("Nn")]]
    if native:
        # Hyperscan: the detector's anchors instead (a street-type word, or a street suffix followed by a
        # number), which dense data holds far less often than a digit; the detector finds nothing without one.
        # (word-list boundaries as supersets Hyperscan takes: not after and, unless the word ends in '.' or
        # ':', not before an ASCII letter or digit)
        address = [
            [start, "(?:", *w, ")", "" if word[-1] in ".:" else "(?:[^A-Za-z0-9]|$)"]
            for word in ANCHOR_WORDS
            if (w := _word(word.lower())) is not None
        ]
        number = [_Alt(" \t"), "*", "(?:", *(_word("nr") or []), _Alt("."), "?", ws, "*", ")?", digit]
        address += [[*w, *number] for suffix in ANCHOR_SUFFIXES if (w := _word(suffix)) is not None]
    sep = _Alt("./-")
    # _YEARISH: \d[./-]\s?\d{1,2}\s?[./-]\s?\d|\d{4}
    dob: list[list[_Alt | str]] = [
        [digit, sep, ws, "?", digit, "{1,2}", ws, "?", sep, ws, "?", digit],
        [digit, "{4}"],
    ]
    if native:
        # Hyperscan: a birth word or an age phrase instead (the detector finds nothing without one of them),
        # which dense data holds far less often than a date shape; words as prefixes, after a non-alnum.
        dob = [[start, *w] for word in BIRTH_WORDS if (w := _word(word.lower())) is not None]
        dob += [[start, *w] for word in AGE_WORDS if (w := _word(word)) is not None]
        units: list[_Alt | str] = ["(?:"]
        for i, unit in enumerate(AGE_UNITS):
            units += ["|"] if i else []
            units += _word(unit) or []
        dob.append([digit, ws, "*", "(?:-", ws, "*)?", *units, ")"])
    names: list[list[_Alt | str]] = []
    given_names: list[list[_Alt | str]] = []
    after: list[_Alt | str] = [_Alt(" \t\n,!"), "*", up]
    for phrase in sorted(_KIND):
        # Short titles such as "M." and "D." count only written as listed (see names._CASED_LOWER).
        spellings: list[list[_Alt | str]] = [[_Alt(c) for c in w] for w in sorted(_CASED) if w.lower() == phrase]
        if phrase not in _CASED_LOWER:
            if not native:
                continue  # without Hyperscan: _ContextWords, on the text in small letters
            word = _word(phrase)
            spellings = [word] if word is not None else []
        for spelling in spellings:
            names.append([start, "(?:", *spelling, ")", *after])
    if given and native:
        # The name lists are asked about a word of a run of capitalised words (and particles): a given
        # name written with a capital first (the rest in any case), or a particle that is a given name,
        # each followed by whitespace (a given name is never the last word of the run): Hyperscan finds
        # the words (as plain words: fast to compile), ContextGate.candidates checks what follows.
        particles = set(re.findall(r"[a-z]+", _PARTICLE))
        for name in sorted(given):
            word = _word(name)
            first = [c for c in _lower_to(name[0]) if c.isupper()]
            if word is not None and first:
                given_names.append([_Alt(first), *word[1:]])
            if name in particles:
                given_names.append([*(_Alt(c) for c in name)])
    elif given:
        # Without Hyperscan (a long alternation is slow in ``re``): two capitalised words in a row, the
        # second maybe after a particle.
        letters = _Alt([c for c in _CHARS if c.isalpha()] + ["-", "'"])
        parts: list[_Alt | str] = ["(?:"]
        for i, alt in enumerate(_PARTICLE[3:-1].split("|")):  # "(?:van\\s+der|...|d['’])"
            parts += ["|"] if i else []
            for part in re.split(r"(\\s\+|\['’\])", alt):
                if part == r"\s+":
                    parts += [ws, "+"]
                elif part == "['’]":
                    parts.append(_Alt("'’"))
                else:
                    parts += [_Alt(c) for c in part]
        parts += [")"]
        blank = _Alt(" \t")
        names.append([up, letters, "*", blank, "+", "(?:", *parts, blank, "*", ")?", up])
    return {"address": address, "dob": dob, "names": names, _GIVEN: given_names}


# Characters outside the gated range (then every detector runs), as UTF-8 bytes and as an ``re`` class.
_OUTSIDE_BYTES = rb"\xc9[\x90-\xbf]|[\xca-\xff]|\xc4[\xb0\xb1]|\xc5\xbf"
_OUTSIDE = re.compile("[\u0130\u0131\u017f\u0250-\U0010ffff]")
_PARTICLE_WORDS = re.findall(r"[a-z]+", _PARTICLE)
_ALL = "<all>"
_GIVEN = "<given>"
# What follows a given name inside a run of capitalised words: spaces or tabs, then a capital (ASCII, or
# the first byte of one in U+00C0..U+024F) or the first letter of a particle ("van", "de", "y", "af" ...).
_AFTER_GIVEN = re.compile(rb"[ \t]+[A-Z\xc3-\xc9" + "".join(sorted({p[0] for p in _PARTICLE_WORDS})).encode() + rb"]")


_KIND_OF = ((StreetAddressDetector, "address"), (DateOfBirthDetector, "dob"), (PersonNameDetector, "names"))


class _ContextWords:
    """The names condition's context words for ``re`` (no Hyperscan): the words of ``names._KIND`` in any
    case (those not written only as listed), followed by spaces, tabs, line breaks, ',' or '!' and a capital.

    As one pattern with every letter a class of its cases ("[Nn][Aa][Mm][Ee]"), ``re`` spent about 3 CPU-s
    per MB of text on it (it tries every word at every position). Here the words are looked for in the text
    in small letters, as plain words, and the capital after each in the text itself: the same condition for
    the gated texts, whose characters (below U+0250, minus three) keep their length in small letters."""

    def __init__(self) -> None:
        ws = "[" + "".join(re.escape(c) for c in _WS) + "]"
        words = sorted((p for p in _KIND if p not in _CASED_LOWER), key=len, reverse=True)
        alternation = "|".join(f"{ws}+".join(re.escape(part) for part in w.split(" ")) for w in words)
        self._pattern = re.compile(rf"(?<![A-Za-z0-9])(?:{alternation})[ \t\n,!]*")
        self._upper = frozenset(UPPER)

    def search(self, text: str) -> bool:
        upper, end = self._upper, len(text)
        return any(m.end() < end and text[m.end()] in upper for m in self._pattern.finditer(text.lower()))


def _kind(det: Detector) -> str | None:
    for cls, kind in _KIND_OF:
        if type(det) is cls:
            return kind
    return None


@lru_cache(maxsize=8)
def _database(kinds: tuple[str, ...], given: frozenset[str]) -> tuple[Any, tuple[str, ...]]:
    """The Hyperscan database for some detector kinds, compiled once per process, and the kind of each
    pattern id (``_ALL`` for text outside the gated range, ``_GIVEN`` for a given name).

    Every pattern has an id of its own: Hyperscan compiles patterns that share an id together, and with the
    pack's 4,400 given names under one id that took 10 s of CPU (18-38 s on a loaded machine) instead of
    1 s (measured 2026-11-29 on 2 cores)."""
    import hyperscan

    pieces = _pieces(given, True)
    expressions: list[bytes] = [_OUTSIDE_BYTES]
    kind_of: list[str] = [_ALL]
    flags: list[int] = [hyperscan.HS_FLAG_SINGLEMATCH]
    for kind in kinds:
        for seq in pieces[kind]:
            expressions.append(_render(seq, True))
            kind_of.append(kind)
            flags.append(hyperscan.HS_FLAG_SINGLEMATCH)
    if "names" in kinds:
        for seq in pieces[_GIVEN]:
            expressions.append(_render(seq, True))
            kind_of.append(_GIVEN)
            flags.append(0)  # reported at every match, with its end
    db = hyperscan.Database()
    db.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions), flags=flags)
    return db, tuple(kind_of)


class ContextGate:
    """Which of some context detectors can find anything in a text (see the module text)."""

    def __init__(self, detectors: Sequence[Detector], *, native: bool | None = None) -> None:
        self.detectors = list(detectors)
        self._always = [d for d in self.detectors if _kind(d) is None]
        kinds = sorted({k for d in self.detectors if (k := _kind(d)) is not None})
        self._of_kind = {k: [d for d in self.detectors if _kind(d) == k] for k in kinds}
        given = frozenset().union(
            *(d.gazetteer.given for d in self.detectors if isinstance(d, PersonNameDetector) and d.gazetteer)
        )
        self._patterns: list[tuple[str, Callable[[str], object]]] = []  # without Hyperscan: (kind, search)
        self.native = False
        if native is not False:
            try:
                import hyperscan

                self._hs: Any = hyperscan
                self._db, self._kind_of = _database(tuple(kinds), given)
                self._local = threading.local()
                self.native = True
            except Exception as exc:  # not installed, or unsupported CPU
                if native is True:
                    raise RuntimeError(f"the Hyperscan context gate cannot be used: {exc}") from exc
        if not self.native:
            pieces = _pieces(given, False)
            self._patterns = [
                (kind, re.compile("|".join(_render(seq, False) for seq in pieces[kind])).search) for kind in kinds
            ]
            if "names" in kinds:
                self._patterns.append(("names", _ContextWords().search))

    def candidates(self, text: str) -> list[Detector]:
        """The detectors whose ``find`` may return something on ``text`` (in their given order)."""
        present: set[str] = set()
        if self.native:
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError:  # lone surrogates
                return self.detectors
            kind_of = self._kind_of

            def on_match(id_: int, _start: int, end: int, *_: Any) -> None:
                kind = kind_of[id_]
                if kind != _GIVEN:
                    present.add(kind)
                elif _AFTER_GIVEN.match(data, end):
                    present.add("names")

            scratch = getattr(self._local, "scratch", None)
            if scratch is None:
                scratch = self._local.scratch = self._hs.Scratch(self._db)
            self._db.scan(data, match_event_handler=on_match, scratch=scratch)
            if _ALL in present:
                return self.detectors
        else:
            if _OUTSIDE.search(text):
                return self.detectors
            present = {kind for kind, search in self._patterns if search(text)}
        if len(present) == len(self._of_kind) and not self._always:
            return self.detectors
        return [d for d in self.detectors if d in self._always or _kind(d) in present]
