"""Optional native pre-filter for raw JSONL lines (Intel Hyperscan, ``pip install hyperscan``).

The pure-Python engine decides "can this raw line contain a finding?" with one ``re`` pass per candidate
kind (see :meth:`bastion.policies.PolicyEngine.may_contain`). With the ``hyperscan`` package installed,
the same question is answered by one multi-pattern scan of the line's UTF-8 bytes, about ten times
faster. The hyperscan patterns are prefixes of the candidate patterns (same character classes, lower
repeat bounds, no look-arounds), so they match at least wherever the ``re`` candidates match: the
answer may be "yes" more often, never "no" where the ``re`` path would say "yes". Lines that pass go
down the same full path either way, so findings and output do not depend on whether it is installed.

Set ``BASTION_NO_HYPERSCAN=1`` to turn it off, or choose per engine:
``PolicyEngine(policy, prefilter="re" | "hyperscan" | "auto")``.

Lines holding characters that the normalised view changes (see ``detectors/normalize.py``) always take
the full path; the patterns here only need to cover ASCII text.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NamedTuple

from bastion.policies.detectors import escapes
from bastion.policies.detectors.candidates import ALNUM_PREFILTER, AT_WORDS, WORD_AT_WORDS
from bastion.policies.detectors.defanged import ADJACENT as DEFANGED_IP_ADJACENT
from bastion.policies.detectors.encoded import ADJACENT as BASE64_ADJACENT
from bastion.policies.detectors.lookalike import ADJACENT as LOOKALIKE_ADJACENT
from bastion.policies.detectors.lookalike import LETTERS as LOOKALIKE_LETTERS
from bastion.policies.detectors.normalize import ASCII_LOWER, hyperscan_class, raw_needs_view
from bastion.policies.detectors.odd_separators import ADJACENT as ODD_SEPARATORS_ADJACENT
from bastion.policies.detectors.odd_separators import ESCAPED_BREAK_BYTES
from bastion.policies.detectors.odd_separators import NATIONAL_ADJACENT as ODD_NATIONAL_ADJACENT
from bastion.policies.detectors.odd_separators import NATIONAL_ODD as ODD_NATIONAL_SEPARATORS
from bastion.policies.detectors.odd_separators import ODD as ODD_SEPARATORS
from bastion.policies.detectors.odd_separators import PHONE_ADJACENT as ODD_PHONE_ADJACENT
from bastion.policies.detectors.odd_separators import PHONE_ODD as ODD_PHONE_SEPARATORS
from bastion.policies.detectors.spelled import HS_PATTERN as SPELLED_HS_PATTERN
from bastion.policies.detectors.spelled import SCREEN as SPELLED_SCREEN


def _caseless(word: str) -> bytes:
    """An ASCII word in any case, as a pattern for Hyperscan and ``re`` alike ("at" -> ``[Aa][Tt]``)."""
    return b"".join(b"[%s%s]" % (c.upper().encode(), c.lower().encode()) for c in word)


# Prefixes of CANDIDATE_PATTERNS (detectors/candidates.py), written for Hyperscan in UTF-8 mode.
HS_PATTERNS: dict[str, bytes] = {
    "email": rb"@",
    "email_at": rb"[\[({<] ?(?:" + b"|".join(_caseless(w) for w in AT_WORDS) + rb"|@) ?[\])}>]",
    "email_words": rb" [Dd][Oo][Tt] [A-Za-z]{2}|" + b"|".join(_caseless(w) for w in WORD_AT_WORDS),
    "iban": rb"[0-9]{2}(?:[ .\-]?[A-Za-z0-9]){10}",
    "alnum": ALNUM_PREFILTER.encode("ascii"),
    "ipv6": rb":[0-9A-Fa-f]{0,4}:",
    "spelled": SPELLED_HS_PATTERN,
    "lookalike": LOOKALIKE_ADJACENT.encode("ascii"),
    "lookalike_iban": LOOKALIKE_ADJACENT.encode("ascii"),
    "lookalike_alnum": LOOKALIKE_ADJACENT.encode("ascii"),
    "odd_separators": ODD_SEPARATORS_ADJACENT.encode("utf-8"),
    "odd_phone": ODD_PHONE_ADJACENT.encode("utf-8"),
    "odd_national_phone": ODD_NATIONAL_ADJACENT.encode("utf-8"),
    "defanged_ip": DEFANGED_IP_ADJACENT.encode("ascii"),
    "base64": BASE64_ADJACENT.encode("ascii"),
    "number": rb"[+(0-9](?:[ ._/()\-]{0,8}[0-9]){3}",
}


# Non-ASCII characters that Python's ``re.IGNORECASE`` matches to ASCII letters (U+0130, U+0131 -> i,
# U+017F -> s, U+212A -> k): a line holding one takes the full path when a keyword is case-insensitive.
_ODD_CASE_FOLDS = rb"[\x{0130}\x{0131}\x{017f}\x{212a}]"


def _shape_table() -> bytes:
    table = bytearray(b" " * 256)
    table[ord("A") : ord("Z") + 1] = b"A" * 26
    table[ord("a") : ord("z") + 1] = b"a" * 26
    table[ord("0") : ord("9") + 1] = b"0" * 10
    for ch in b" ._-/)":  # number separators
        table[ch] = ord("s")
    table[ord("(")] = ord("(")  # starts a number and separates digits
    table[ord("+")] = ord("+")
    return bytes(table)


# Without Hyperscan: a line's UTF-8 bytes mapped to shapes (A = ASCII capital, a = ASCII small letter,
# 0 = ASCII digit, s or ( = number separator) and screened with
# patterns that start with a literal (fast in ``re``; a leading character class that matches most letters
# is not). Each screen is a necessary condition for its candidate pattern on the normalised view, for texts
# whose view is the text itself (the engine checks that first): "iban" needs two letters, two digits and ten
# more letters or digits (single separators between them), "alnum" a capital followed by seven digits,
# five capitals, or a capital and two digits (a NINO's prefix), or the digit-led tail of a code in small
# letters (six digits and a letter; "00a00a000a" of a codice fiscale; "00s00s00sa" of a NINO in its
# groups), "number" three digits each separated by at most eight separator characters.
SHAPE_TABLE = _shape_table()


class Screen(NamedTuple):
    table: bytes
    pattern: re.Pattern[bytes]
    confirm: re.Pattern[bytes] | None = None  # a slower, stricter screen for what passes ``pattern``
    # screens that pass on their own (one alternation of different first characters is far slower in ``re``
    # than a pattern led by a literal, each tried in turn)
    alternatives: tuple[re.Pattern[bytes], ...] = ()

    def search(self, mapped: bytes) -> bool:
        if self.pattern.search(mapped) is not None and (self.confirm is None or self.confirm.search(mapped)):
            return True
        return any(alt.search(mapped) is not None for alt in self.alternatives)


def _lookalike_table() -> bytes:
    table = bytearray(b" " * 256)
    table[ord("0") : ord("9") + 1] = b"0" * 10
    for ch in LOOKALIKE_LETTERS.encode("ascii"):  # letters that look like digits
        table[ch] = ord("L")
    return bytes(table)


def _digits_table() -> bytes:
    table = bytearray(range(256))
    table[ord("0") : ord("9") + 1] = b"0" * 10
    return bytes(table)


def _case_table() -> bytes:
    """Small ASCII letters to ``a``, capitals to ``A``, digits and the other Base64 characters to ``0``."""
    table = bytearray(b" " * 256)
    table[ord("a") : ord("z") + 1] = b"a" * 26
    table[ord("A") : ord("Z") + 1] = b"A" * 26
    for ch in b"0123456789+/_-":
        table[ch] = ord("0")
    return bytes(table)


def _one_of(chars: str) -> bytes:
    """A group matching one of ``chars`` in UTF-8 bytes, each a whole character (a byte class would take a
    bullet's three bytes for three characters)."""
    return b"(?:" + b"|".join(re.escape(c.encode()) for c in chars) + b")"


def _national_adjacent_bytes() -> bytes:
    """``odd_separators.NATIONAL_ADJACENT`` on UTF-8 bytes with digits as ``0``."""
    sep = _one_of(" ._/()-" + ODD_NATIONAL_SEPARATORS)
    return b"0" + sep + b"{0,2}" + _one_of(ODD_NATIONAL_SEPARATORS) + sep + b"{0,2}0"


# A look-alike letter right beside a digit: the condition of the three look-alike kinds.
_LOOKALIKE_SCREEN = Screen(_lookalike_table(), re.compile(rb"0L|L0"))

SCREENS: dict[str, Screen] = {
    "odd_separators": Screen(
        _digits_table(),
        re.compile(b"0000 ?" + _one_of(ODD_SEPARATORS) + b"{1,2} ?0000"),
    ),
    "odd_phone": Screen(
        _digits_table(),
        re.compile(rb"\+0[0 ._/()\-]{0,24}?" + _one_of(ODD_PHONE_SEPARATORS)),
    ),
    "odd_national_phone": Screen(_digits_table(), re.compile(_national_adjacent_bytes())),
    "base64": Screen(_case_table(), re.compile(rb"a0*A")),  # (one step: a weaker, linear condition)
    "defanged_ip": Screen(_digits_table(), re.compile(DEFANGED_IP_ADJACENT.replace("[0-9]", "0").encode("ascii"))),
    "lookalike": _LOOKALIKE_SCREEN,
    "lookalike_iban": _LOOKALIKE_SCREEN,
    "lookalike_alnum": _LOOKALIKE_SCREEN,
    "email_words": Screen(
        ASCII_LOWER,
        re.compile(rb" dot [a-z]{2}"),
        alternatives=tuple(re.compile(w.encode()) for w in WORD_AT_WORDS),
    ),
    "spelled": Screen(ASCII_LOWER, SPELLED_SCREEN),
    "iban": Screen(SHAPE_TABLE, re.compile(rb"00(?:s?[Aa0]){10}")),
    "alnum": Screen(
        SHAPE_TABLE,
        re.compile(rb"A(?:0{7}|A{5}|As?00)"),
        alternatives=(re.compile(rb"000000s?[Aa]"), re.compile(rb"00a00a000a"), re.compile(rb"00s00s00s[Aa]")),
    ),
    "number": Screen(SHAPE_TABLE, re.compile(rb"0(?:[s(]{0,8}0){2}")),
}


def screened(data: bytes, kinds: Sequence[str]) -> set[str]:
    """Which of the screened ``kinds`` pass their screen on ``data`` (the others are not returned)."""
    shapes: dict[bytes, bytes] = {}
    out = set()
    for kind in kinds:
        screen = SCREENS.get(kind)
        if screen is None:
            continue
        mapped = shapes.get(screen.table)
        if mapped is None:
            mapped = shapes[screen.table] = data.translate(screen.table)
        if screen.search(mapped):
            out.add(kind)
    return out


class _Stop(Exception):
    pass


class HyperscanPrefilter:
    """One compiled Hyperscan database; ``hit(line_bytes)`` is True when any pattern occurs."""

    def __init__(self, kinds: Sequence[str], keywords: Sequence[tuple[Sequence[str], bool]]) -> None:
        import hyperscan

        self._hs = hyperscan
        # JSON escapes \uXXXX and \/ can hide a candidate from the raw text, and characters that the
        # normalised view changes (or web escapes it reads) can make one: such lines always go the full way.
        # So can a line break or tab JSON escapes between two digits (odd_separators.ESCAPED_BREAK_BYTES).
        expressions: list[bytes] = [rb"\\u", rb"\\/", *(HS_PATTERNS[k] for k in kinds), escapes.HS_PATTERN]
        expressions.append(ESCAPED_BREAK_BYTES)
        expressions.append(hyperscan_class())
        base = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP
        flags = [base] * (len(expressions) - 1)
        flags.append(base & ~hyperscan.HS_FLAG_UCP)  # an explicit class: UCP only makes it slow to compile
        for words, case_sensitive in keywords:
            for word in words:
                expressions.append(re.escape(word).encode("utf-8"))
                flags.append(base if case_sensitive else base | hyperscan.HS_FLAG_CASELESS)
        if any(not case_sensitive for _, case_sensitive in keywords):
            # Python's re.IGNORECASE also matches these to i, s and k; Hyperscan does not for all of them.
            expressions.append(_ODD_CASE_FOLDS)
            flags.append(base)
        self._db = hyperscan.Database()
        ids = list(range(len(expressions)))
        self._db.compile(expressions=expressions, ids=ids, elements=len(expressions), flags=flags)
        self._local = threading.local()  # scratch space is per thread

    def checker(self) -> Callable[[bytes], bool]:
        """A ``hit`` function with its own scratch space, for one user at a time (e.g. one scanner)."""
        scan = self._db.scan
        scratch = self._hs.Scratch(self._db)
        terminated = self._hs.ScanTerminated

        def hit(line: bytes) -> bool:
            try:
                scan(line, match_event_handler=_stop, scratch=scratch)
            except terminated:
                return True
            return False

        return hit

    def hit(self, line: bytes) -> bool:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hs.Scratch(self._db)
        try:
            self._db.scan(line, match_event_handler=_stop, scratch=scratch)
        except self._hs.ScanTerminated:
            return True
        return False


# Pseudo-kind reported by the gates: the text holds characters that the normalised view changes.
VIEW = "<view>"


class KindGate:
    """Which candidate kinds can occur in a text: one Hyperscan scan instead of one ``re`` pass per kind.

    A kind whose Hyperscan prefix pattern does not occur has no ``re`` candidate either (the prefixes
    match wherever the candidates do), so the engine skips that pass; the passes that run are unchanged.
    The same scan reports :data:`VIEW` when the text holds characters that the normalised view changes.
    """

    def __init__(self, kinds: Sequence[str]) -> None:
        import hyperscan

        self._hs = hyperscan
        self.kinds = list(kinds)
        base = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_UCP
        expressions = [HS_PATTERNS[k] for k in kinds]
        self._db = hyperscan.Database()
        self._db.compile(
            expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions),
            flags=[base] * len(expressions),
        )  # fmt: skip
        self._local = threading.local()

    def present(self, text: str) -> set[str] | None:
        """The kinds whose prefix occurs in ``text`` (and :data:`VIEW`); None when the text cannot be
        scanned (lone surrogates)."""
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._hs.Scratch(self._db)
        found: set[str] = set()
        kinds = self.kinds

        def on_match(id_: int, *_: Any) -> None:
            found.add(kinds[id_])

        self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        if (not data.isascii() and view_checker()(data)) or escapes.occurs_in_bytes(data):
            found.add(VIEW)
        return found


_VIEW_LOCAL = threading.local()


@cache
def _view_database() -> Any:
    import hyperscan

    db = hyperscan.Database()
    flags = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_UTF8
    db.compile(expressions=[hyperscan_class()], ids=[0], elements=1, flags=[flags])
    return db


def view_checker() -> Callable[[bytes], bool]:
    """A function telling whether UTF-8 bytes hold a character the normalised view changes (Hyperscan;
    one database per process, scratch space per thread)."""
    import hyperscan

    db = _view_database()
    scratch = getattr(_VIEW_LOCAL, "scratch", None)
    if scratch is None:
        scratch = _VIEW_LOCAL.scratch = hyperscan.Scratch(db)

    def check(data: bytes) -> bool:
        try:
            db.scan(data, match_event_handler=_stop, scratch=scratch)
        except hyperscan.ScanTerminated:
            return True
        return False

    return check


class ScreenGate:
    """:class:`KindGate` without Hyperscan: the byte-shape ``SCREENS`` rule out the slow kinds."""

    def __init__(self, kinds: Sequence[str]) -> None:
        self.kinds = list(kinds)
        self._unscreened = {k for k in self.kinds if k not in SCREENS}

    def present(self, text: str) -> set[str] | None:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            return None
        found = self._unscreened | screened(data, self.kinds)
        if raw_needs_view(data):
            found.add(VIEW)
        return found


def build_gate(kinds: Sequence[str], *, native: bool | None = None) -> KindGate | ScreenGate | None:
    """A :class:`KindGate`, or a :class:`ScreenGate` when hyperscan is not installed or disabled; None when
    no kind is screened (then every pass runs). ``native``: None = Hyperscan when available and
    ``BASTION_NO_HYPERSCAN`` is unset; True = Hyperscan or ``RuntimeError``; False = never Hyperscan."""
    if not any(k in SCREENS for k in kinds):
        return None
    if native is True or (native is None and not os.environ.get("BASTION_NO_HYPERSCAN")):
        try:
            return KindGate(kinds)
        except Exception as exc:  # not installed, or unsupported CPU
            if native is True:
                raise RuntimeError(f"the Hyperscan kind gate cannot be used: {exc}") from exc
    return ScreenGate(kinds)


def _stop(*_: Any) -> bool:
    return True  # stop at the first match: the line goes down the full path


def build(
    kinds: Sequence[str], keywords: Sequence[tuple[Sequence[str], bool]], *, required: bool = False
) -> HyperscanPrefilter | None:
    """A Hyperscan pre-filter, or None when hyperscan is not installed, disabled, or cannot take a keyword
    (case-insensitive non-ASCII keywords are left to the ``re`` path: Hyperscan folds case for ASCII only).
    With ``required``, those cases raise ``RuntimeError`` instead (and the environment switch is ignored)."""
    if os.environ.get("BASTION_NO_HYPERSCAN") and not required:
        return None
    if any(not cs and not all(w.isascii() for w in words) for words, cs in keywords):
        if required:
            raise RuntimeError("Hyperscan cannot take case-insensitive non-ASCII keywords")
        return None
    try:
        return HyperscanPrefilter(kinds, keywords)
    except Exception as exc:  # not installed, unsupported CPU, or a pattern it rejects: use the re path
        if required:
            raise RuntimeError(f"the Hyperscan pre-filter cannot be used: {exc}") from exc
        return None
