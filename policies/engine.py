"""The policy engine: find personal data in every string of a record, decide, and redact.

Per record, all strings (values and object keys, JSON numbers as their digit strings, and the strings
inside strings that hold JSON, such as tool-call ``arguments``) are joined with NUL. The built-in detectors
match on the normalised view of that text (see :mod:`bastion.policies.detectors.normalize`): the policy's
candidate regexes run once per kind and only candidates are validated (checksums, phone metadata,
``ipaddress``). Candidates are found independently of each other: a digit run is tried whole and as every
sub-run of its digit groups, an IBAN or e-mail candidate never hides the next one, and a run overlapping an
e-mail or IBAN is still tried. Conflicts are resolved after validation: when validated spans overlap, the
stricter action wins (a card inside two "phones" is a card), then the checksummed type, then the longer span.
Redacted text is scanned again until nothing new of a redact/block rule appears (a value next to a redacted
one can become visible only after redaction). Custom regex and keyword detectors run per string on the
original text. Findings carry positions (in the original text) and types, never the matched text.
"""

from __future__ import annotations

import copy
import json
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from itertools import accumulate
from typing import Any, Literal, TypeVar

from bastion.policies import prefilter as _prefilter
from bastion.policies.classify import Classifier
from bastion.policies.context_gate import ContextGate
from bastion.policies.detectors import (
    Detector,
    Hit,
    build_detectors,
    defanged,
    encoded,
    lookalike,
    odd_separators,
    spelled,
)
from bastion.policies.detectors.candidates import COMPILED, IPV4_SHAPE, NUMBER_TOKEN, mask_uuids, passes
from bastion.policies.detectors.context import REACH as CONTEXT_REACH
from bastion.policies.detectors.context import last_word_before
from bastion.policies.detectors.email import EmailDetector
from bastion.policies.detectors.ip_address import IpAddressDetector
from bastion.policies.detectors.keywords import KeywordsDetector
from bastion.policies.detectors.normalize import View, needs_view, raw_needs_view
from bastion.policies.detectors.payment_card import PaymentCardDetector
from bastion.policies.detectors.phone import PhoneDetector
from bastion.policies.detectors.regex import RegexDetector
from bastion.policies.json_rules import decode_nested, number_text
from bastion.policies.model import ACTION_ORDER, Policy

_SEP = "\x00"
# No identifier we know has more digits than a payment card (19); longer runs are only tried as sub-runs.
_MAX_DIGITS = 19
_NEAR = 10  # margin around a placeholder within which a re-scan validates candidates
_EMAIL_REACH = 66  # how far before its '@' candidate an e-mail address may start (quoted local part)
_ASCII_LETTER = re.compile("[A-Za-z]")  # an IBAN candidate needs two before it
_PART_BUDGET = 2000  # sub-run validations per text, plus one per 16 characters
_DIGIT_GROUP = re.compile(r"[0-9]+")
# Characters of text kept on each side of a run that a reader rewrites (words to digits, look-alikes, odd
# separators): far more than any detector looks around a number (context words: REACH, 32).
_CONTEXT = 256
_ESCAPED_BREAK = re.compile(odd_separators.ESCAPED_BREAK)  # (see may_contain)
_ESCAPED_BREAK_BYTES = re.compile(odd_separators.ESCAPED_BREAK_BYTES)
# A check letter right after a number spelled in words ("... two five eight Z", "... eight-z")
_CHECK_LETTER_AFTER = re.compile(r"[ \-]?[A-Za-z](?![^\W\d_])")
# An IBAN from its check digits on with up to three separators between characters ("89 | 3704 | 0044 ...")
_IBAN_TAIL_SPACED = re.compile(r"[0-9]{2}(?:[ .\-]{0,3}[A-Za-z0-9]){10,34}")
_D = TypeVar("_D", bound=Detector)
_MIN_DIGITS = 6  # fewer: nothing we know is that short, except an IPv4 address
# Rounds of "scan the redacted text again"; a string still yielding new findings after that is redacted whole.
_MAX_RESCANS = 3
_JSON_EDGE = frozenset('{}[]"')
PathPart = str | int
Prefilter = Literal["auto", "hyperscan", "re"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One piece of personal data found: where and what type, never the value."""

    record: int
    path: str
    entity: str
    rule_id: str
    action: str
    start: int
    end: int
    scheme: str = ""
    in_key: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RecordScan:
    """Result of scanning one record. ``record`` is the redacted copy (the input object when unchanged)."""

    index: int
    action: str
    record: Any
    findings: list[Finding] = field(default_factory=list)
    changed: bool = False
    classification: str | None = None


@dataclass(frozen=True, slots=True)
class ResidencyDecision:
    allowed: bool
    rule_id: str | None
    reason: str
    upstream: str = ""
    jurisdiction: str | None = None
    classification: str | None = None


class _Owner:
    """A string that holds a JSON document we decoded and scanned inside."""

    __slots__ = ("container", "dirty", "holder", "key", "parent")

    def __init__(self, container: Any, key: PathPart, decoded: Any, parent: _Owner | None) -> None:
        self.container = container
        self.key = key
        self.holder = [decoded]
        self.parent = parent
        self.dirty = False


class _Slot:
    __slots__ = ("container", "is_key", "key", "owner", "path", "text")

    def __init__(
        self, text: str, container: Any, key: PathPart, is_key: bool, path: tuple[PathPart, ...], owner: _Owner | None
    ) -> None:
        self.text = text
        self.container = container
        self.key = key
        self.is_key = is_key
        self.path = path
        self.owner = owner


class PolicyEngine:
    """Applies one :class:`~bastion.policies.model.Policy` to records.

    The fast paths are public knobs (results never depend on them; tests run both ways):

    * ``prefilter``: ``"auto"`` (Hyperscan when installed and ``BASTION_NO_HYPERSCAN`` is unset),
      ``"hyperscan"`` (required: ``RuntimeError`` when it cannot be used) or ``"re"`` (pure Python);
    * ``kind_gate``: skip candidate passes whose necessary shape does not occur in a record;
    * ``raw_line_fast_path``: let the scanner only validate (not scan) raw JSONL lines that the
      pre-filter calls clean;
    * ``context_gate``: on raw lines, run a context detector (names, addresses, dates of birth) only when
      one cheap pass finds its necessary trigger (see :mod:`bastion.policies.context_gate`).
    """

    def __init__(
        self,
        policy: Policy,
        *,
        prefilter: Prefilter = "auto",
        kind_gate: bool = True,
        raw_line_fast_path: bool = True,
        context_gate: bool = True,
    ) -> None:
        if prefilter not in ("auto", "hyperscan", "re"):
            raise ValueError(f"prefilter must be 'auto', 'hyperscan' or 're', not {prefilter!r}")
        self.policy = policy
        self.prefilter_mode: Prefilter = prefilter
        self.detectors: list[Detector] = build_detectors(policy)
        self._by_kind: dict[str, list[Detector]] = {}
        for det in sorted(self.detectors, key=lambda d: d.priority):
            for kind in det.candidate_kinds:
                self._by_kind.setdefault(kind, []).append(det)
        self._passes = passes(set(self._by_kind))
        # Kinds whose runs are read as digit numbers written otherwise: (screen where no kind gate asks, reader)
        self._rewritten: dict[str, tuple[Callable[[str], bool], Callable[[str, int, int], list[Hit]]]] = {
            "spelled": (spelled.may_occur, self._spelled_run),
            "lookalike": (lookalike.may_occur, self._lookalike_run),
            "lookalike_iban": (lookalike.may_occur, self._lookalike_iban),
            "lookalike_alnum": (lookalike.may_occur, self._lookalike_alnum),
            "odd_separators": (odd_separators.may_occur, self._odd_separator_run),
            "odd_phone": (odd_separators.phone_may_occur, self._odd_separator_phone),
            "odd_national_phone": (odd_separators.national_phone_may_occur, self._odd_separator_national_phone),
            "defanged_ip": (defanged.may_occur, self._defanged_ip),
        }
        self._blocking_detectors = frozenset(d for d in self.detectors if d.blocking)
        self._standalone = [d for d in self.detectors if not d.candidate_kinds]
        self._raw_ok = raw_line_fast_path and all(d.raw_safe for d in self._standalone)
        # Context detectors (dates of birth, names, addresses) run once per record on the normalised view of
        # all its strings, like the candidate passes; the others (regex, keywords, NER) per string.
        self._on_view = [d for d in self._standalone if d.on_view]
        self._standalone = [d for d in self._standalone if not d.on_view]
        self._classifier = Classifier(policy)
        self._raw_keywords = [d.raw_pattern for d in self._standalone if isinstance(d, KeywordsDetector)]
        # Custom regexes (context-free ones only, else _raw_ok is False) pre-filter lines without backslashes.
        self._raw_regexes = [d.pattern for d in self._standalone if isinstance(d, RegexDetector)]
        kinds = [kind for kind, _ in self._passes]
        native = {"auto": None, "hyperscan": True, "re": False}[prefilter]
        self._native = None
        if self._raw_ok and native is not False:
            keywords = [
                (d.spec.keywords, d.spec.case_sensitive) for d in self._standalone if isinstance(d, KeywordsDetector)
            ]
            self._native = _prefilter.build(kinds, keywords, required=native is True)
        self._gate = _prefilter.build_gate(kinds, native=native) if kind_gate and len(self._passes) > 1 else None
        self._context_gate = ContextGate(self._on_view, native=native) if context_gate and self._on_view else None
        self._rank = {name: i for i, name in enumerate(policy.classifications)}
        acting = [d for d in self._by_kind.get("number", ()) if d.action != "allow"]
        self._fail_closed = max(acting, key=lambda d: d.priority) if acting else None
        self._by_classification = frozenset(d for d in self._standalone if d.classifications is not None)

    @property
    def raw_line_fast_path(self) -> bool:
        """Whether raw JSONL lines the pre-filter calls clean are only validated (not scanned)."""
        return self._raw_ok

    @property
    def kind_gate(self) -> bool:
        """Whether candidate passes are skipped when their necessary shape is absent."""
        return self._gate is not None

    # -- detection -------------------------------------------------------------------------------

    def may_contain(self, raw_json_text: str) -> bool:
        """Cheap test on a raw JSON line: False means no string in it can produce a finding.

        Sound because candidate patterns never span characters that JSON escapes (see
        ``detectors/candidates.py``); lines with ``\\u`` or ``\\/`` escapes, with characters that the
        normalised view changes, or with a tab or line break escaped between digits (the one kind of escaped
        character a candidate spans), always take the full path.
        Custom regexes may match anything (quotes, backslashes, newlines), so with any of them a line with a
        backslash always takes the full path; without one, every decoded string (and key) is a substring of
        the raw line, and a context-free pattern (no anchors or look-arounds, see
        :func:`~bastion.policies.detectors.regex.context_free`) that matches in a string matches in the line.
        """
        if not self._raw_ok or "\\u" in raw_json_text or "\\/" in raw_json_text or needs_view(raw_json_text):
            return True
        if "\\" in raw_json_text and _ESCAPED_BREAK.search(raw_json_text):
            return True  # a tab or line break between digits: decoded, it is a separator of a number
        for _, pattern in self._passes:
            if pattern.search(raw_json_text):
                return True
        if any(p.search(raw_json_text) for p in self._raw_keywords):
            return True
        return self._may_match_regexes(raw_json_text)

    def _may_contain_screened(self, raw_json_text: str, raw_bytes: bytes) -> bool:
        """Exactly :meth:`may_contain`, but the slow ``re`` passes (a character class at every position)
        run only when a cheap screen of the line's bytes finds their necessary shape (see
        ``prefilter.SCREENS``)."""
        if not self._raw_ok or b"\\u" in raw_bytes or b"\\/" in raw_bytes or raw_needs_view(raw_bytes):
            return True
        if b"\\" in raw_bytes and _ESCAPED_BREAK_BYTES.search(raw_bytes):
            return True
        shapes: dict[bytes, bytes] = {}
        for kind, pattern in self._passes:
            screen = _prefilter.SCREENS.get(kind)
            if screen is not None:
                mapped = shapes.get(screen.table)
                if mapped is None:
                    mapped = shapes[screen.table] = raw_bytes.translate(screen.table)
                if not screen.search(mapped):
                    continue  # no candidate of this kind can occur
            if pattern.search(raw_json_text):
                return True
        if any(p.search(raw_json_text) for p in self._raw_keywords):
            return True
        return self._may_match_regexes(raw_json_text)

    def _may_match_regexes(self, raw_json_text: str) -> bool:
        if self._on_view and _may_match_context(self._on_view, raw_json_text, self._context_gate):
            return True
        if not self._raw_regexes:
            return False
        return "\\" in raw_json_text or any(p.search(raw_json_text) for p in self._raw_regexes)

    def may_contain_line(self, raw_json_text: str, raw_bytes: bytes) -> bool:
        """:meth:`may_contain` for a line given both as text and as its (valid) UTF-8 bytes; uses the
        Hyperscan pre-filter when it is in use (see :mod:`bastion.policies.prefilter`)."""
        if self._native is None:
            return self._may_contain_screened(raw_json_text, raw_bytes)
        # The database also matches the \\u and \\/ escapes and the characters the view changes; custom
        # regexes stay with ``re``.
        return self._native.hit(raw_bytes) or self._may_match_regexes(raw_json_text)

    def line_checker(self) -> Callable[[str, bytes], bool]:
        """:meth:`may_contain_line` as a function for one user at a time (a scanner): with Hyperscan, it
        has its own scratch space and skips the per-call look-ups."""
        if self._native is None:
            return self.may_contain_line
        hit = self._native.checker()
        if not self._raw_regexes and not self._on_view:
            return lambda _text, raw_bytes: hit(raw_bytes)
        may_match_regexes = self._may_match_regexes
        return lambda text, raw_bytes: hit(raw_bytes) or may_match_regexes(text)

    @property
    def blocking(self) -> bool:
        """Whether scanning waits on a worker pool (an enabled ``ner`` detector). An async caller (the gateway)
        must then run scans in a worker thread (``anyio.to_thread.run_sync``), never on its event loop."""
        return any(d.blocking for d in self.detectors)

    def warm_up(self) -> None:
        """Start the worker pools of the policy's models and load the models now (a gateway calls this when it
        starts, so the first upload does not wait seconds on a model load). Blocks: call it from a thread."""
        for det in self.detectors:
            det.warm_up()

    def close(self) -> None:
        """Stop the worker pools of the policy's models (they start again on the next scan)."""
        for det in self.detectors:
            det.close()

    @property
    def native_prefilter(self) -> bool:
        """Whether the Hyperscan pre-filter is in use."""
        return self._native is not None

    def find(self, text: str) -> list[Hit]:
        """Non-overlapping hits in one string (used for tests and the CLI; records use scan_record)."""
        return self._find_many([text])[0]

    def _find_many(self, texts: list[str], skip: frozenset[Detector] = frozenset()) -> list[list[Hit]]:
        """Resolved hits per text, such that the redacted texts yield no new redact/block hit of the
        rule-based detectors (a model, ``blocking``, runs on the texts as given, not again on redacted ones).
        Detectors in ``skip`` do not run."""
        per_text = self._find_once(texts, skip=skip)
        todo = [i for i, hits in enumerate(per_text) if hits and any(h.detector.action != "allow" for h in hits)]
        rounds = 0
        while todo:
            rounds += 1
            redacted = [_redact_map(texts[i], per_text[i]) for i in todo]
            # Only what touches a placeholder can be new: elsewhere the text is as it was.
            again = self._find_once([r.text for r in redacted], [r.placeholders() for r in redacted], skip=skip)
            nxt: list[int] = []
            for i, red, hits in zip(todo, redacted, again, strict=True):
                new = [
                    Hit(*red.to_original(h.start, h.end), h.detector, h.scheme)
                    for h in hits
                    if h.detector.action != "allow"
                ]
                new = [h for h in new if not red.covered(h.start, h.end)]
                if not new:
                    continue
                if rounds >= _MAX_RESCANS:  # pragma: no cover - no known input needs this many rounds
                    strictest = _strictest([*per_text[i], *new])
                    per_text[i] = [Hit(0, len(texts[i]), strictest.detector, strictest.scheme)]
                    continue
                per_text[i] = _absorb(per_text[i], new)
                nxt.append(i)
            todo = nxt
        return per_text

    def _find_once(
        self, texts: list[str], near: list[list[tuple[int, int]]] | None = None, skip: frozenset[Detector] = frozenset()
    ) -> list[list[Hit]]:
        """Resolved hits per text. With ``near`` (per text, sorted spans), built-in candidates that do not
        touch one of those spans are not validated (used when re-scanning around placeholders)."""
        per_text: list[list[Hit]] = [[] for _ in texts]
        if self._passes or self._on_view:
            joined = _SEP.join(texts)
            present = self._gate.present(joined) if self._gate is not None else None
            if present is None or _prefilter.VIEW in present:
                view = View(joined)
                if not view.identity and self._gate is not None:
                    present = self._gate.present(view.text)
            else:
                view = View(joined, identity=True)
            windows: list[tuple[int, int]] | None = None
            starts: list[int] = []
            pos = 0
            for t in texts:
                starts.append(pos)
                pos += len(t) + 1
            if near is not None and view.identity:
                # A placeholder also changes what is next to it: a run it cut off is now whole, up to
                # eight separator characters away (see the "number" candidate pattern), and the label words
                # a number after it reads ("Tel <e-mail> 32123456" comes within reach of "Tel"; see
                # detectors/context.py).
                after = max(_NEAR, CONTEXT_REACH)
                windows = _merge_spans(
                    [(starts[i] + s - _NEAR, starts[i] + e + after) for i, spans in enumerate(near) for s, e in spans]
                )
            found = self._candidates(view.text, present, windows)
            # context detectors: the whole view, also when re-scanning; only those whose necessary
            # trigger occurs (the context gate's condition holds for any text, not only raw lines)
            gate = self._context_gate
            for det in self._on_view if gate is None else gate.candidates(view.text):
                found.extend(det.find(view.text))
            identity = view.identity
            for hit in found:
                s, e = (hit.start, hit.end) if identity else view.span(hit.start, hit.end)
                i = bisect_right(starts, s) - 1
                base = starts[i]
                if e <= base + len(texts[i]):
                    per_text[i].append(Hit(s - base, e - base, hit.detector, hit.scheme))
        for det in self._standalone:
            if det in skip or (near is not None and det.blocking):
                continue
            for i, hits in enumerate(det.find_many(texts)):
                per_text[i].extend(hits)
        return [_resolve(h) if len(h) > 1 else h for h in per_text]

    def _candidates(
        self, text: str, present: set[str] | None, windows: list[tuple[int, int]] | None = None
    ) -> list[Hit]:
        """Validated hits of every candidate kind in ``text`` (the view), overlapping ones included. With
        ``windows`` (sorted spans), only candidates reaching into one of them are validated."""
        found: list[Hit] = []
        win_starts = [s for s, _ in windows] if windows is not None else []
        win_ends = [e for _, e in windows] if windows is not None else []

        def touches(s: int, e: int) -> bool:  # does [s, e) meet a window or its edges?
            if windows is None:
                return True
            k = bisect_right(win_starts, e)  # windows starting at or before e (sorted, non-overlapping)
            return k > 0 and win_ends[k - 1] >= s

        for kind, pattern in self._passes:
            if present is not None and kind not in present:
                continue  # no candidate of this kind can occur (see prefilter.KindGate)
            if kind == "number":  # the last pass: the hits of the others are known
                prior = _Covers(found)
                budget = [_PART_BUDGET + len(text) // 16]  # validations of sub-runs left (see _number_run)
                digits_view = mask_uuids(text)  # the random digit groups of ids are not numbers
                for m in pattern.finditer(digits_view):
                    if touches(m.start(), m.end()):
                        found.extend(self._number_run(digits_view, m.start(), m.end(), prior, budget))
            elif kind == "email":
                floor = 0  # a local part never reaches back into the previous address
                for m in pattern.finditer(text):
                    if not touches(m.start() - _EMAIL_REACH, m.end()):
                        continue
                    for det in self._by_kind[kind]:
                        if isinstance(det, EmailDetector):
                            hits = det.validate_after(text, m.start(), m.end(), floor)
                        else:  # pragma: no cover - only the email detector takes email candidates
                            hits = det.validate(text, m.start(), m.end(), kind)
                        if hits:
                            found.extend(hits)
                            floor = max(floor, *(h.end for h in hits))
                            break
            elif kind == "iban":  # the candidate starts at the check digits: the country code is before them
                pos = 0
                while (tail := pattern.search(text, pos)) is not None:
                    s = tail.start() - 2
                    hits = []
                    lettered = s >= 0 and text[s : s + 2].isascii() and text[s : s + 2].isalpha()
                    if lettered and touches(s, tail.end()):
                        hits = self._validate(text, s, tail.end(), kind)
                        found.extend(hits)
                    if hits:
                        pos = max(h.end for h in hits)
                    elif lettered:
                        pos = tail.start() + 1
                    else:  # no candidate starts before the next ASCII letter has passed (a 16-digit card
                        # number was searched again from each of its digits)
                        letter = _ASCII_LETTER.search(text, tail.start() + 1)
                        if letter is None:
                            break
                        pos = letter.end()
            elif kind == "base64":  # a match marks a run of Base64: the whole run is read, once
                if present is None and not encoded.may_occur(text):
                    continue
                pos = 0
                while (mark := pattern.search(text, pos)) is not None:
                    s, e = encoded.run_span(text, pos, mark.start(), mark.end())
                    if touches(s, e):
                        found.extend(self._encoded_run(text, s, e))
                    pos = e
            elif kind in self._rewritten:  # numbers in words, look-alike letters, odd separators
                may_occur, read_run = self._rewritten[kind]
                if present is None and not may_occur(text):
                    continue  # (without Hyperscan's kind gate: their patterns alone cost ``re`` far more)
                for m in pattern.finditer(text):
                    if touches(m.start(), m.end()):
                        found.extend(read_run(text, m.start(), m.end()))
            elif kind in ("email_at", "email_words"):
                for m in pattern.finditer(text):
                    if touches(m.start() - _EMAIL_REACH, m.end()):
                        found.extend(self._validate(text, m.start(), m.end(), kind))
            elif kind == "ipv6":
                for m in pattern.finditer(text):
                    if touches(m.start() - 5, m.end()):
                        found.extend(self._validate(text, m.start(), m.end(), kind))
            else:  # letter-led codes: a candidate that fails may hide the start of the next one
                pos = 0
                while (code := pattern.search(text, pos)) is not None:
                    hits = self._validate(text, code.start(), code.end(), kind) if touches(*code.span()) else []
                    found.extend(hits)
                    pos = max(h.end for h in hits) if hits else code.start() + 1
        return found

    def _spelled_run(self, text: str, start: int, end: int) -> list[Hit]:
        """A number spelled in words (see :mod:`.detectors.spelled`): its digits are put in the text in
        place of the words and validated as a digit run there (so that the words before and after it count
        as they would for digits); each hit covers the words that wrote its digits."""
        run = spelled.read(text, start, end)
        if run is None:
            return []
        last = max(span[1] for span in run.owner if span is not None)
        digits_text, lo = _rewritten(text, run.start, last, run.number)
        first = run.start - lo  # where the digits start in digits_text
        stop = first + len(run.number)  # where the text after the run starts in digits_text
        letter = _CHECK_LETTER_AFTER.match(digits_text, stop)  # "... two five eight Z": a DNI's check letter
        hits = self._digit_runs(digits_text, first, letter.end() if letter else stop)
        if ", " in run.number:  # "four one one one, one one one one, ...": a card with commas, after a card word
            hits += self._odd_separator_run(digits_text, first, stop)
        found = self._spelled_iban(text, run) if "iban" in self._by_kind else []
        for hit in hits:
            spans = [run.owner[i - first] for i in range(max(hit.start, first), min(hit.end, stop))]
            covered = [span for span in spans if span is not None]
            if covered:
                end = hit.end - stop + last if hit.end > stop else covered[-1][1]
                found.append(hit._replace(start=covered[0][0], end=end))
        return found

    def _spelled_iban(self, text: str, run: spelled.Spelled) -> list[Hit]:
        """An IBAN read aloud: its country code in letters before a spelled run ("DE eight nine three seven
        ...", "D E acht neun ..."), with digit words, digits and capital letter groups ("GB two nine NWBK six
        zero ...") up to and through the run (the longest valid IBAN from the country code)."""
        end = max(span[1] for span in run.owner if span is not None)
        for start, chars, ends in spelled.iban_readings(text, run.start, end):
            for length in range(min(len(chars), 34), 14, -1):
                hit = self._accepted(chars[:length], "iban")
                if hit is not None:
                    return [Hit(start, ends[length - 1], hit.detector)]
        return []

    def _digit_runs(self, digits_text: str, start: int, end: int) -> list[Hit]:
        """The hits of the digit runs in ``digits_text[start:end]``, a number written otherwise and put back
        into its text as digits (validated as the digit pass validates a run, with a budget of its own)."""
        prior, budget = _Covers([]), [_PART_BUDGET]
        found: list[Hit] = []
        for m in COMPILED["number"].finditer(digits_text, start, end):
            found.extend(self._number_run(digits_text, m.start(), m.end(), prior, budget))
        return found

    def _lookalike_run(self, text: str, start: int, end: int) -> list[Hit]:
        """A number with letters that look like digits (see :mod:`.detectors.lookalike`): read with them as
        digits, in place (one character for one, so the hits' spans hold in ``text``), and validated as a
        digit run there, and from its check digits as an IBAN ("DE89 37O4 OO44 ...")."""
        found: list[Hit] = []
        if "iban" in self._by_kind and lookalike.may_occur(text[start:end]):
            whole, lo = _rewritten(text, start, end, text[start:end].translate(lookalike.AS_DIGITS))
            for tail in COMPILED["iban"].finditer(whole, start - lo, end - lo):
                s = tail.start() - 2
                if s >= 0 and whole[s : s + 2].isascii() and whole[s : s + 2].isalpha():
                    found.extend(_shifted(self._validate(whole, s, tail.end(), "iban"), lo))
        run = lookalike.read(text, start, end)
        if run is None:
            return found
        digits_text, lo = _rewritten(text, run.start, run.end, run.number)
        return found + _shifted(self._digit_runs(digits_text, run.start - lo, run.end - lo), lo)

    def _lookalike_iban(self, text: str, start: int, end: int) -> list[Hit]:
        """An IBAN with look-alike letters among its digits (see :func:`.detectors.lookalike.iban_readings`):
        the first reading the IBAN detectors accept, over the characters as written."""
        for reading, stop in lookalike.iban_readings(text, start, end):
            hit = self._accepted(reading, "iban")
            if hit is not None:
                return [Hit(start, stop, hit.detector)]
        return []

    def _lookalike_alnum(self, text: str, start: int, end: int) -> list[Hit]:
        """An NIE or a codice fiscale with look-alike letters where its digits stand (see
        :func:`.detectors.lookalike.alnum_reading`), as the letter-led code detectors read it."""
        reading = lookalike.alnum_reading(text, start, end)
        if reading is None:
            return []
        hit = self._accepted(reading, "alnum")
        return [Hit(start, end, hit.detector, hit.scheme)] if hit is not None else []

    def _odd_separator_run(self, text: str, start: int, end: int) -> list[Hit]:
        """A run of digit groups with separators no number uses (see :mod:`.detectors.odd_separators`): with
        them read as spaces, one character for one, every span of whole groups that holds 13-19 digits is
        asked of the card detectors (the longest card from each group on), and a run that ends an IBAN is
        asked of the IBAN detector from its country code on (see :meth:`_odd_separator_iban`)."""
        run = text[start:end]
        if not odd_separators.may_occur(run):
            return []
        mapped, lo = _rewritten(text, start, end, run.translate(odd_separators.AS_SPACES))
        found = self._odd_separator_iban(text, start, end) if "iban" in self._by_kind else []
        cards = self._number_detectors(PaymentCardDetector)
        if not cards:
            return found
        # (spans in text; mapped holds them lo characters earlier)
        groups = [(m.start() + lo, m.end() + lo) for m in _DIGIT_GROUP.finditer(mapped, start - lo, end - lo)]
        before = list(accumulate((e - s for s, e in groups), initial=0))  # digits before each group
        starts = [g[0] for g in groups]
        i = 0
        while i < len(groups):
            hit = None
            longest = min(bisect_right(before, before[i] + 19) - 2, len(groups) - 1)  # (19 digits at most)
            for j in range(longest, i, -1):  # the longest first
                if not 13 <= before[j + 1] - before[i] <= 19:
                    continue
                s, e = groups[i][0], groups[j][1]
                odd = odd_separators.odd_separators(text[s:e])
                if not odd or not odd_separators.may_occur(text[s:e]):
                    continue  # no odd separator inside: the digit pass reads it as it is
                list_like = bool(odd & odd_separators.LIST_SEPARATORS)
                if list_like and last_word_before(text, s) != "card":
                    continue  # "4000,4001,4002,4003": a list, unless a card word names it
                hit = next((h for det in cards for h in det.validate(mapped, s - lo, e - lo, "number")), None)
                if hit is not None:
                    hit = hit._replace(start=hit.start + lo, end=hit.end + lo)
                    break
            if hit is None:
                i += 1
                continue
            found.append(hit)
            i = bisect_left(starts, hit.end)
        return found

    def _odd_separator_phone(self, text: str, start: int, end: int) -> list[Hit]:
        """A phone number led by '+' with odd separators (see :mod:`.detectors.odd_separators`): its digit
        groups joined by single spaces are asked of the phone detectors, all of them, then one group fewer
        each time (a number may follow it in the run); the hit covers the groups as written."""
        phones = self._number_detectors(PhoneDetector)
        if not phones or not odd_separators.has_phone_separator(text[start + 1 : end]):
            return []
        groups = [m.span() for m in _DIGIT_GROUP.finditer(text, start + 1, end)]
        for k in range(len(groups), 1, -1):
            written = "+" + " ".join(text[s:e] for s, e in groups[:k])
            if not odd_separators.has_phone_separator(text[start + 1 : groups[k - 1][1]]):
                break  # no odd separator left among these groups: the digit pass reads them
            for det in phones:
                if any(h.end == len(written) for h in det.validate(written, 0, len(written), "number")):
                    return [Hit(start, groups[k - 1][1], det)]
        return []

    def _odd_separator_national_phone(self, text: str, start: int, end: int) -> list[Hit]:
        """A national phone number with odd separators after a word for a phone (see
        :mod:`.detectors.odd_separators`): with them read as spaces, one character for one, its groups are
        asked of the phone detectors in place (they see the word), all of them, then one group fewer each
        time (a number may follow it in the run); the hit covers the groups as written."""
        phones = self._number_detectors(PhoneDetector)
        if not phones or last_word_before(text, start) != "phone":
            return []
        mapped, lo = _rewritten(text, start, end, text[start:end].translate(odd_separators.NATIONAL_AS_SPACES))
        ends = [m.end() for m in _DIGIT_GROUP.finditer(text, start, end)]
        for e in reversed(ends[1:]):
            if not odd_separators.has_national_separator(text[start:e]):
                break  # no odd separator left among these groups: the digit pass reads them
            for det in phones:
                if any(
                    h.start == start - lo and h.end == e - lo
                    for h in det.validate(mapped, start - lo, e - lo, "number")
                ):
                    return [Hit(start, e, det)]
        return []

    def _encoded_run(self, text: str, start: int, end: int) -> list[Hit]:
        """A run of Base64 (see :mod:`.detectors.encoded`): the text it encodes is scanned as a string of its
        own (its Base64 runs too: data encoded twice), without the detectors that wait on a model; the
        strictest of its hits covers the run."""
        inner = encoded.decoded(text[start:end])
        if inner is None:
            return []
        hits = self._find_once([inner], skip=self._blocking_detectors)[0]
        if not hits:
            return []
        strictest = _strictest(hits)
        return [Hit(start, end, strictest.detector, strictest.scheme)]

    def _defanged_ip(self, text: str, start: int, end: int) -> list[Hit]:
        """An IPv4 address with dots in brackets (see :mod:`.detectors.defanged`), as the IP address detectors
        read it with them as dots; the hit covers the run as written."""
        reading = defanged.reading(text, start, end)
        if reading is None:
            return []
        for det in self._number_detectors(IpAddressDetector):
            hits = det.validate(reading, 0, len(reading), "number")
            if hits and hits[0].end == len(reading):
                return [Hit(start, end, det, hits[0].scheme)]
        return []

    def _odd_separator_iban(self, text: str, start: int, end: int) -> list[Hit]:
        """An IBAN with odd separators that ends in the run ``text[start:end]``: its country code glued to the
        run ("DE89*3704*..."), or its first groups before it ("GB17*FGRX*1341*...")."""
        country = text[start - 2 : start] if start >= 2 else ""
        if country.isascii() and country.isalpha():
            head = start - 2
        else:
            before = odd_separators.IBAN_HEAD.search(text, max(0, start - 40), start)
            if before is None:
                return []
            head = before.start()
        mapped, lo = _rewritten(text, head, end, text[head:end].translate(odd_separators.AS_SPACES))
        tail = _IBAN_TAIL_SPACED.match(mapped, head - lo + 2, end - lo)
        return _shifted(self._validate(mapped, head - lo, tail.end(), "iban"), lo) if tail is not None else []

    def _number_detectors(self, cls: type[_D]) -> list[_D]:
        """The configured detectors of digit numbers that are ``cls`` (the readers of rewritten runs ask one
        kind of them), in priority order."""
        return [d for d in self._by_kind.get("number", ()) if isinstance(d, cls)]

    def _accepted(self, reading: str, kind: str) -> Hit | None:
        """The hit of the first detector of ``kind`` that takes all of ``reading`` (a number read from how it
        was written, as a string of its own: nothing glued to it), or None."""
        hits = self._validate(reading, 0, len(reading), kind)
        return hits[0] if hits and hits[0].end == len(reading) else None

    def _validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        for det in self._by_kind.get(kind, ()):
            hits = det.validate(text, start, end, kind)
            if hits:
                return hits
        return []

    def _validate_number(
        self, text: str, start: int, end: int, digits: int, prior: _Covers, part: bool = False
    ) -> list[Hit]:
        if digits < _MIN_DIGITS and not IPV4_SHAPE.fullmatch(text, start, end):
            return []
        cover = prior.covering(start, end)
        for det in self._by_kind.get("number", ()):
            low, high = det.digit_range
            if not low <= digits <= high:
                continue  # (the count includes a check letter's absence; see Detector.digit_range)
            if part and not det.takes_part(text, start, end):
                continue  # a part of a longer digit run needs a stronger written form for this type
            if cover is not None and _rank_key(cover)[:2] <= _rank_key_of(det):
                continue  # whatever it finds lies inside a hit that wins over it: nothing would change
            hits = det.validate(text, start, end, "number")
            if hits:
                return hits
        if text[start] == "(":
            return self._validate_number(text, start + 1, end, digits, prior, part)  # "(4111 1111 1111 1111)"
        return []

    def _number_run(self, text: str, start: int, end: int, prior: _Covers, budget: list[int]) -> list[Hit]:
        """A digit run tried as a whole and, unless that is one identifier, as every sub-run of its digit
        groups (split on every separator): longest valid sub-run per starting group. Detectors are not
        asked about a span inside an e-mail, IBAN or IPv6 hit that would win over theirs (``prior``).

        ``budget`` bounds the sub-run validations of one text (long runs of short digit groups, "0 0 0 ...",
        would otherwise cost a validation per group and length): when it is spent, the rest of a run that
        still needs sub-runs is redacted whole (fail closed), typed by the weakest acting number detector."""
        tokens = [(m.start(), m.end()) for m in NUMBER_TOKEN.finditer(text, start, end)]
        letter = [text[s].isalpha() for s, _ in tokens]
        counts = [
            0 if is_letter else e - s - (text[s] == "+") for (s, e), is_letter in zip(tokens, letter, strict=True)
        ]
        total = sum(counts)
        found: list[Hit] = []
        if total <= _MAX_DIGITS:
            found = self._validate_number(text, start, end, total, prior)
            if found and (len(tokens) == 1 or found[0].detector.action == "block" or total < 14):
                return found  # one identifier (a card cannot hide in fewer than 14 digits beside it)
        if len(tokens) == 1:
            return found
        for i in range(len(tokens)):
            if letter[i]:
                continue
            if budget[0] <= 0:
                closed = self._fail_closed
                if closed is not None:
                    found.append(Hit(tokens[i][0], tokens[-1][1], closed))
                break
            digits = 0
            ends: list[tuple[int, int]] = []  # (j, digits of tokens i..j)
            for j in range(i, len(tokens)):
                digits += counts[j]
                if digits > _MAX_DIGITS:
                    break
                ends.append((j, digits))
                if letter[j]:
                    break
            for j, d in reversed(ends):
                s, e = tokens[i][0], tokens[j][1]
                if s == start and e == end:
                    continue  # the whole run, tried above
                budget[0] -= 1
                # the run without a final letter is the number as written ("612 34 56 78 y …"): a final
                # letter is a check letter (DNI 12345678Z) or the next word, and only ids take it
                whole = letter[-1] and s == start and j == len(tokens) - 2
                hits = self._validate_number(text, s, e, d, prior, part=not whole)
                if hits:
                    found.extend(hits)
                    break
        return found

    # -- records ---------------------------------------------------------------------------------

    def scan_record(
        self,
        record: Any,
        index: int = 0,
        *,
        copy_record: bool = True,
        opaque: frozenset[tuple[str, str]] = frozenset(),
    ) -> RecordScan:
        """Scan one decoded JSON record. ``index`` is the record number reported in findings.

        Returns the decision and a redacted copy (or the input object itself when nothing changed;
        with ``copy_record=False`` the input object is redacted in place). ``opaque`` holds (path, value)
        pairs, paths as findings write them (``training_files[0].file_id``): a string with that value at
        that path is not scanned, because the caller knows it to be an identifier the upstream itself
        issued (the gateway passes the ids of files it admitted that a job names).
        """
        slots: list[_Slot] = []
        owners: list[_Owner] = []
        holder = [record]
        _collect(record, holder, 0, (), slots, owners, None, 0)
        if opaque:
            slots = _without_opaque(slots, opaque)
        texts = [s.text for s in slots]
        gated = self._by_classification
        hits_per_slot = self._find_many(texts, gated)
        findings, action, changed, classification = self._judge(index, slots, hits_per_slot)
        if gated:  # models that run only on records of some classifications (NerDetector.classifications)
            wanted = frozenset(d for d in gated if d.classifications and classification in d.classifications)
            if wanted:
                hits_per_slot = self._find_many(texts, gated - wanted)
                findings, action, changed, classification = self._judge(index, slots, hits_per_slot)
        if not changed:
            return RecordScan(index, action, record, findings, False, classification)
        if copy_record:
            holder = [_json_copy(record)]
            slots, owners = [], []
            _collect(holder[0], holder, 0, (), slots, owners, None, 0)
            if opaque:
                slots = _without_opaque(slots, opaque)
        _apply(slots, hits_per_slot, owners)
        return RecordScan(index, action, holder[0], findings, True, classification)

    def _judge(
        self, index: int, slots: list[_Slot], hits_per_slot: list[list[Hit]]
    ) -> tuple[list[Finding], str, bool, str]:
        """Findings, action, whether anything is redacted, and classification of one record's hits."""
        findings: list[Finding] = []
        action = "allow"
        changed = False
        keep_rank = self._rank[self.policy.default_classification]
        for slot, hits in zip(slots, hits_per_slot, strict=True):
            for hit in hits:
                det = hit.detector
                findings.append(
                    Finding(
                        index,
                        _format_path(slot.path, slot.is_key),
                        det.entity,
                        det.rule_id,
                        det.action,
                        hit.start,
                        hit.end,
                        hit.scheme,
                        slot.is_key,
                    )
                )
                if ACTION_ORDER[det.action] > ACTION_ORDER[action]:
                    action = det.action
                if det.action == "allow":
                    keep_rank = max(keep_rank, self._rank[det.classification])
                else:
                    changed = True
        if self._classifier and findings:  # the policy's classify rules: e.g. a named person + a diagnosis
            keep_rank = self._classifier.rank(keep_rank, {f.entity for f in findings}, (s.text for s in slots))
        return findings, action, changed, self.policy.classifications[keep_rank]

    def scan_records(self, records: Sequence[Any], start: int = 0, *, copy_record: bool = True) -> list[RecordScan]:
        """:meth:`scan_record` for many records (numbered from ``start``), with a model's work on all of them
        done in big batches first (see :meth:`prefetched`); the results are the same as one by one."""
        with self.prefetched(records):
            return [self.scan_record(r, start + i, copy_record=copy_record) for i, r in enumerate(records)]

    @contextmanager
    def prefetched(self, records: Iterable[Any]) -> Iterator[None]:
        """While the block runs, scans in this thread take the results of the policy's models (``ner``
        detectors that run on every record) for the strings of ``records`` from one batched run over all of
        them, made here. Records that are not JSON values the engine can walk are left to the scan itself."""
        models = [d for d in self._standalone if d.blocking and d not in self._by_classification]
        if not models:
            yield
            return
        texts: list[str] = []
        for record in records:
            slots: list[_Slot] = []
            try:
                _collect(record, [record], 0, (), slots, [], None, 0)
            except Exception:  # the scan of that record reports it
                continue
            texts.extend(s.text for s in slots)
        with ExitStack() as stack:
            for det in models:
                stack.enter_context(det.prefetched(texts))
            yield

    # -- residency -------------------------------------------------------------------------------

    def check_residency(
        self, upstream_id: str, jurisdiction: str | None = None, classification: str | None = None
    ) -> ResidencyDecision:
        """May data of ``classification`` (default: the policy's default) go to this upstream?

        The policy's own ``upstreams`` entry wins over the ``jurisdiction`` passed by the caller. No
        known jurisdiction, an unknown classification, or no rule allowing it: not allowed (fail closed).
        """
        declared = self.policy.upstream(upstream_id)
        where = declared.jurisdiction if declared is not None else (jurisdiction.upper() if jurisdiction else None)
        cls = classification or self.policy.default_classification
        if where is None:
            return ResidencyDecision(
                False,
                None,
                f"upstream {upstream_id!r} has no known jurisdiction (not declared in policy {self.policy.name!r})",
                upstream_id,
                None,
                cls,
            )
        if cls not in self._rank:
            return ResidencyDecision(
                False,
                None,
                f"classification {cls!r} is not declared in policy {self.policy.name!r}",
                upstream_id,
                where,
                cls,
            )
        covering = [r for r in self.policy.residency if cls in r.classifications]
        for rule in covering:
            if "*" in rule.jurisdictions or where in rule.jurisdictions:
                return ResidencyDecision(
                    True, rule.id, f"{cls} data may go to {where} (rule {rule.id})", upstream_id, where, cls
                )
        if covering:
            rule = covering[0]
            return ResidencyDecision(
                False,
                rule.id,
                f"{cls} data may only go to {', '.join(rule.jurisdictions)}; upstream {upstream_id!r} is in {where}",
                upstream_id,
                where,
                cls,
            )
        return ResidencyDecision(
            False,
            None,
            f"no residency rule of policy {self.policy.name!r} allows {cls} data anywhere",
            upstream_id,
            where,
            cls,
        )

    def rank(self, classification: str) -> int:
        return self._rank[classification]


def _rewritten(text: str, start: int, end: int, middle: str) -> tuple[str, int]:
    """``text`` with ``middle`` in place of ``text[start:end]``, cut to :data:`_CONTEXT` characters on each side,
    and where the cut starts in ``text``. (A reader that copied the whole text for each of its runs made a
    line of many runs cost the square of its length: 3.5 CPU-s for 0.8 MB of "4111*".)"""
    lo = max(0, start - _CONTEXT)
    return text[lo:start] + middle + text[end : end + _CONTEXT], lo


def _shifted(hits: list[Hit], by: int) -> list[Hit]:
    return [h._replace(start=h.start + by, end=h.end + by) for h in hits] if by else hits


def _json_copy(value: Any) -> Any:
    """A copy of a JSON value to redact in place: new dicts and lists, the same strings, numbers and other
    leaves (immutable); anything else deep-copied. (``copy.deepcopy`` spent 3 % of a PII-dense scan on the
    bookkeeping it needs for objects JSON never holds.)"""
    if isinstance(value, dict):
        return {k: _json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_copy(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return copy.deepcopy(value)


def _collect(
    value: Any,
    container: Any,
    key: PathPart,
    path: tuple[PathPart, ...],
    slots: list[_Slot],
    owners: list[_Owner],
    owner: _Owner | None,
    depth: int,
) -> None:
    if isinstance(value, str):
        # (cheap test first: most strings neither start nor end like a JSON document)
        if (
            len(value) > 1
            and (value[0] in _JSON_EDGE or value[0].isspace())
            and (value[-1] in _JSON_EDGE or value[-1].isspace())
        ):
            nested, decoded = decode_nested(value, depth)
            if nested:
                inner = _Owner(container, key, decoded, owner)
                owners.append(inner)
                _collect(decoded, inner.holder, 0, (*path, "<json>"), slots, owners, inner, depth + 1)
                return
        slots.append(_Slot(value, container, key, False, path, owner))
    elif isinstance(value, dict):
        for k, v in value.items():
            p = (*path, k)
            slots.append(_Slot(k, value, k, True, p, owner))
            _collect(v, value, k, p, slots, owners, owner, depth)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _collect(v, value, i, (*path, i), slots, owners, owner, depth)
    else:
        digits = number_text(value)
        if digits is not None:  # a JSON number, scanned as its digit string; redacted, it becomes a string
            slots.append(_Slot(digits, container, key, False, path, owner))


def _without_opaque(slots: list[_Slot], opaque: frozenset[tuple[str, str]]) -> list[_Slot]:
    values = {value for _, value in opaque}
    return [s for s in slots if s.is_key or s.text not in values or (_format_path(s.path, False), s.text) not in opaque]


def _apply(slots: list[_Slot], hits_per_slot: list[list[Hit]], owners: list[_Owner]) -> None:
    renames: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}
    for slot, hits in zip(slots, hits_per_slot, strict=True):
        if not hits:
            continue
        spans = [h for h in hits if h.detector.action != "allow"]
        if not spans:
            continue
        text = _redact_map(slot.text, spans).text
        if slot.is_key:
            renames.setdefault(id(slot.container), (slot.container, {}))[1][str(slot.key)] = text
        else:
            slot.container[slot.key] = text
        if slot.owner is not None:
            slot.owner.dirty = True
    final: dict[int, dict[str, str]] = {}  # container id -> old key -> key it ended up under
    for container, mapping in renames.values():
        items = list(container.items())
        container.clear()
        moved = final[id(container)] = {}
        for k, v in items:
            new = mapping.get(k, k)
            n = 2
            base = new
            while new in container:
                new = f"{base}#{n}"
                n += 1
            container[new] = v
            moved[k] = new
    for own in reversed(owners):  # children were appended after their parents
        if own.dirty:
            key = own.key
            if isinstance(key, str):
                key = final.get(id(own.container), {}).get(key, key)
            own.container[key] = json.dumps(own.holder[0], ensure_ascii=False)
            if own.parent is not None:
                own.parent.dirty = True


# JSON escapes after which a raw line is not its strings side by side any more (or a nested JSON string is
# escaped twice): such lines take the full path when context detectors are on.
_OPAQUE_ESCAPES = ("\\\\", "\\u", "\\/", "\\b", "\\f", "\\r")


def _may_match_context(detectors: list[Detector], raw_json_text: str, gate: ContextGate | None = None) -> bool:
    """Whether a context detector (names, dates of birth, addresses) may find something in a raw JSON line
    (called only for lines that need no normalised view). With no escapes but \\" \\n \\t, the line decoded
    by plain replacement holds every string of the record (keys, values, nested JSON strings one level
    deep) side by side, separated by JSON punctuation (quotes) that none of their patterns crosses except
    to find more; so nothing found there means nothing found in any string."""
    if any(esc in raw_json_text for esc in _OPAQUE_ESCAPES):
        return True
    text = raw_json_text.replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t")
    if gate is not None:
        detectors = gate.candidates(text)
    return any(det.find(text) for det in detectors)


def _rank_key(h: Hit) -> tuple[int, int, int, int]:
    """Which of two overlapping hits wins: the stricter action, then the detector's priority (checksummed
    types before phone numbers), then the longer span, then the earlier one."""
    return (-ACTION_ORDER[h.detector.action], h.detector.priority, h.start - h.end, h.start)


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, overlapping or touching spans merged."""
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _rank_key_of(det: Detector) -> tuple[int, int]:
    return (-ACTION_ORDER[det.action], det.priority)


class _Covers:
    """Which of some hits covers a span (for skipping validations whose outcome cannot matter)."""

    __slots__ = ("_ends", "_hits", "_starts")

    def __init__(self, hits: list[Hit]) -> None:
        self._hits = sorted(hits, key=lambda h: h.start)
        self._starts = [h.start for h in self._hits]
        self._ends = [h.end for h in self._hits]

    def covering(self, start: int, end: int) -> Hit | None:
        k = bisect_right(self._starts, start)
        for i in range(k - 1, max(-1, k - 5), -1):  # hits do not nest deeply: look at a few
            if self._ends[i] >= end:
                return self._hits[i]
        return None


def _strictest(hits: list[Hit]) -> Hit:
    return min(hits, key=_rank_key)


def _resolve(hits: list[Hit]) -> list[Hit]:
    """Non-overlapping hits. Overlapping redact/block hits are merged into one hit over their union, typed
    by the winner (see :func:`_rank_key`): every valid reading of the text is covered, and the stricter
    action wins (a card inside two "phones" is a card). Report-only (allow) hits never overlap one of those;
    among themselves the winner of each conflict is kept."""
    acting = sorted((h for h in hits if h.detector.action != "allow"), key=lambda h: h.start)
    out: list[Hit] = []
    group: list[Hit] = []
    group_end = -1
    for h in acting:
        if group and h.start >= group_end:
            out.append(_merged(group))
            group = []
        group.append(h)
        group_end = max(group_end, h.end) if len(group) > 1 else h.end
    if group:
        out.append(_merged(group))
    if len(out) != len(hits):
        starts = [h.start for h in out]
        ends = [h.end for h in out]
        kept: list[Hit] = []
        for h in sorted((h for h in hits if h.detector.action == "allow"), key=_rank_key):
            k = bisect_right(starts, h.start)
            if (k > 0 and ends[k - 1] > h.start) or (k < len(starts) and starts[k] < h.end):
                continue  # overlaps a hit already kept
            starts.insert(k, h.start)
            ends.insert(k, h.end)
            kept.append(h)
        out.extend(kept)
        out.sort(key=lambda h: h.start)
    return out


def _merged(group: list[Hit]) -> Hit:
    if len(group) == 1:
        return group[0]
    best = _strictest(group)
    return Hit(min(h.start for h in group), max(h.end for h in group), best.detector, best.scheme)


def _absorb(hits: list[Hit], new: list[Hit]) -> list[Hit]:
    """``hits`` plus ``new``: a new hit overlapping existing ones replaces them by one hit over the union,
    of the strictest detector among them (so the union is redacted)."""
    out = list(hits)
    for n in new:
        overlapping = [h for h in out if h.start < n.end and n.start < h.end]
        if not overlapping:
            out.append(n)
            continue
        group = [*overlapping, n]
        best = _strictest(group)
        for h in overlapping:
            out.remove(h)
        out.append(Hit(min(h.start for h in group), max(h.end for h in group), best.detector, best.scheme))
    out.sort(key=lambda h: h.start)
    return out


class _Redacted:
    """A text with its redact/block spans replaced by placeholders, and the map back to the original."""

    __slots__ = ("orig_ends", "orig_starts", "red_ends", "red_starts", "text")

    def __init__(self, text: str, spans: list[Hit]) -> None:
        self.orig_starts: list[int] = []
        self.orig_ends: list[int] = []
        self.red_starts: list[int] = []
        self.red_ends: list[int] = []
        pieces: list[str] = []
        last = 0
        pos = 0
        for h in sorted(spans, key=lambda h: h.start):
            if h.start < last:  # pragma: no cover - resolved hits do not overlap
                continue
            pieces.append(text[last : h.start])
            pos += h.start - last
            placeholder = h.detector.placeholder
            pieces.append(placeholder)
            self.orig_starts.append(h.start)
            self.orig_ends.append(h.end)
            self.red_starts.append(pos)
            pos += len(placeholder)
            self.red_ends.append(pos)
            last = h.end
        pieces.append(text[last:])
        self.text = "".join(pieces)

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The original span of the redacted span ``[start, end)`` (a placeholder maps to what it replaced)."""
        k = bisect_right(self.red_starts, start) - 1
        if k < 0:
            s = start
        elif start < self.red_ends[k]:
            s = self.orig_starts[k]
        else:
            s = start + self.orig_ends[k] - self.red_ends[k]
        k = bisect_right(self.red_starts, end - 1) - 1
        if k < 0:
            e = end
        elif end <= self.red_ends[k]:
            e = self.orig_ends[k]
        else:
            e = end + self.orig_ends[k] - self.red_ends[k]
        return s, e

    def placeholders(self) -> list[tuple[int, int]]:
        """The spans of the placeholders in the redacted text."""
        return list(zip(self.red_starts, self.red_ends, strict=True))

    def covered(self, start: int, end: int) -> bool:
        """Whether the original span ``[start, end)`` lies inside one redacted span."""
        k = bisect_right(self.orig_starts, start) - 1
        return k >= 0 and end <= self.orig_ends[k]


def _redact_map(text: str, hits: list[Hit]) -> _Redacted:
    return _Redacted(text, [h for h in hits if h.detector.action != "allow"])


def _format_path(path: tuple[PathPart, ...], is_key: bool) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "<json>":
            text += "<json>"
        elif (text and not text.endswith("<json>")) or text:
            text += f".{part}"
        else:
            text = part
    if is_key:
        text += "<key>"
    return text or "$"
