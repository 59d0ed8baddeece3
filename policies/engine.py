"""The policy engine: find personal data in every string of a record, decide, and redact.

Per record, all strings (values and object keys, and the strings inside strings that hold JSON, such as
tool-call ``arguments``) are joined with NUL and the policy's combined candidate regex runs once over
them; only candidates are validated (checksums, phone metadata, ``ipaddress``). Custom regex and keyword
detectors then run per string. Findings carry positions and types, never the matched text.
"""

from __future__ import annotations

import copy
import json
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from bastion.policies import prefilter
from bastion.policies.detectors import Detector, Hit, build_detectors
from bastion.policies.detectors.candidates import IPV4_SHAPE, passes
from bastion.policies.detectors.keywords import KeywordsDetector
from bastion.policies.detectors.regex import RegexDetector
from bastion.policies.model import ACTION_ORDER, Policy

_SEP = "\x00"
_NESTED_JSON_DEPTH = 2
PathPart = str | int


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

    __slots__ = ("container", "decoded", "dirty", "key", "parent")

    def __init__(self, container: Any, key: PathPart, decoded: Any, parent: _Owner | None) -> None:
        self.container = container
        self.key = key
        self.decoded = decoded
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
    """Applies one :class:`~bastion.policies.model.Policy` to records."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.detectors: list[Detector] = build_detectors(policy)
        self._by_kind: dict[str, list[Detector]] = {}
        for det in sorted(self.detectors, key=lambda d: d.priority):
            for kind in det.candidate_kinds:
                self._by_kind.setdefault(kind, []).append(det)
        self._passes = passes(set(self._by_kind))
        self._standalone = [d for d in self.detectors if not d.candidate_kinds]
        self._raw_ok = all(d.raw_safe for d in self._standalone)
        self._raw_keywords = [d.raw_pattern for d in self._standalone if isinstance(d, KeywordsDetector)]
        # Custom regexes (context-free ones only, else _raw_ok is False) pre-filter lines without backslashes.
        self._raw_regexes = [d.pattern for d in self._standalone if isinstance(d, RegexDetector)]
        self._native = None
        if self._raw_ok:
            keywords = [
                (d.spec.keywords, d.spec.case_sensitive) for d in self._standalone if isinstance(d, KeywordsDetector)
            ]
            self._native = prefilter.build([kind for kind, _ in self._passes], keywords)
        self._gate = prefilter.build_gate([kind for kind, _ in self._passes]) if len(self._passes) > 1 else None
        self._rank = {name: i for i, name in enumerate(policy.classifications)}

    # -- detection -------------------------------------------------------------------------------

    def may_contain(self, raw_json_text: str) -> bool:
        """Cheap test on a raw JSON line: False means no string in it can produce a finding.

        Sound because candidate patterns never span characters that JSON escapes (see
        ``detectors/candidates.py``); lines with ``\\u`` or ``\\/`` escapes always take the full path.
        Custom regexes may match anything (quotes, backslashes, newlines), so with any of them a line with a
        backslash always takes the full path; without one, every decoded string (and key) is a substring of
        the raw line, and a context-free pattern (no anchors or look-arounds, see
        :func:`~bastion.policies.detectors.regex.context_free`) that matches in a string matches in the line.
        """
        if not self._raw_ok or "\\u" in raw_json_text or "\\/" in raw_json_text:
            return True
        for _, pattern in self._passes:
            if pattern.search(raw_json_text):
                return True
        if any(p.search(raw_json_text) for p in self._raw_keywords):
            return True
        return self._may_match_regexes(raw_json_text)

    def _may_contain_screened(self, raw_json_text: str, raw_bytes: bytes) -> bool:
        """Exactly :meth:`may_contain`, but the slow ``re`` passes (``alnum``, ``number``: a character class
        at every position) run only when a cheap screen of the line's bytes finds their necessary shape (see
        ``prefilter.SCREENS``)."""
        if not self._raw_ok or b"\\u" in raw_bytes or b"\\/" in raw_bytes:
            return True
        shapes: bytes | None = None
        for kind, pattern in self._passes:
            screen = prefilter.SCREENS.get(kind)
            if screen is not None:
                if shapes is None:
                    shapes = raw_bytes.translate(prefilter.SHAPE_TABLE)
                if not screen.search(shapes):
                    continue  # no candidate of this kind can occur
            if pattern.search(raw_json_text):
                return True
        if any(p.search(raw_json_text) for p in self._raw_keywords):
            return True
        return self._may_match_regexes(raw_json_text)

    def _may_match_regexes(self, raw_json_text: str) -> bool:
        if not self._raw_regexes:
            return False
        return "\\" in raw_json_text or any(p.search(raw_json_text) for p in self._raw_regexes)

    def may_contain_line(self, raw_json_text: str, raw_bytes: bytes) -> bool:
        """:meth:`may_contain` for a line given both as text and as its (valid) UTF-8 bytes; uses the
        Hyperscan pre-filter when it is available (see :mod:`bastion.policies.prefilter`)."""
        if self._native is None:
            return self._may_contain_screened(raw_json_text, raw_bytes)
        # The database also matches the \\u and \\/ escapes; custom regexes stay with ``re``.
        return self._native.hit(raw_bytes) or self._may_match_regexes(raw_json_text)

    def line_checker(self) -> Callable[[str, bytes], bool]:
        """:meth:`may_contain_line` as a function for one user at a time (a scanner): with Hyperscan, it
        has its own scratch space and skips the per-call look-ups."""
        if self._native is None:
            return self.may_contain_line
        hit = self._native.checker()
        if not self._raw_regexes:
            return lambda _text, raw_bytes: hit(raw_bytes)
        may_match_regexes = self._may_match_regexes
        return lambda text, raw_bytes: hit(raw_bytes) or may_match_regexes(text)

    @property
    def native_prefilter(self) -> bool:
        """Whether the Hyperscan pre-filter is in use."""
        return self._native is not None

    def find(self, text: str) -> list[Hit]:
        """Non-overlapping hits in one string (used for tests and the CLI; records use scan_record)."""
        return self._find_many([text])[0]

    def _find_many(self, texts: list[str]) -> list[list[Hit]]:
        per_text: list[list[Hit]] = [[] for _ in texts]
        if self._passes:
            joined = _SEP.join(texts)
            starts: list[int] | None = None
            found: list[Hit] = []
            present = self._gate.present(joined) if self._gate is not None else None
            for kind, pattern in self._passes:
                if present is not None and kind not in present:
                    continue  # no candidate of this kind can occur (see prefilter.KindGate)
                for m in pattern.finditer(joined):
                    s, e = m.start(), m.end()
                    if found and kind == "number" and any(h.start < e and s < h.end for h in found):
                        continue  # digits inside an IBAN, email or IPv6 address already found
                    found.extend(self._validate(joined, s, e, kind))
            if found:
                starts = []
                pos = 0
                for t in texts:
                    starts.append(pos)
                    pos += len(t) + 1
                for hit in found:
                    i = bisect_right(starts, hit.start) - 1
                    base = starts[i]
                    if hit.end <= base + len(texts[i]):
                        per_text[i].append(Hit(hit.start - base, hit.end - base, hit.detector, hit.scheme))
        if self._standalone:
            for i, t in enumerate(texts):
                for det in self._standalone:
                    per_text[i].extend(det.find(t))
        return [_resolve(h) if len(h) > 1 else h for h in per_text]

    def _validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        if kind == "number" and end - start < 6 and not IPV4_SHAPE.fullmatch(text, start, end):
            return []  # fewer than 6 digits: nothing we know is that short, except an IPv4 address
        for det in self._by_kind.get(kind, ()):
            hits = det.validate(text, start, end, kind)
            if hits:
                return hits
        if kind == "number" and text[start] == "(":
            return self._validate(text, start + 1, end, kind)  # "(4111 1111 1111 1111)"
        if kind == "number" and " " in text[start:end]:
            return self._split_groups(text, start, end)
        return []

    def _split_groups(self, text: str, start: int, end: int) -> list[Hit]:
        """A long digit run that is not one identifier: try runs of its space-separated groups."""
        bounds: list[tuple[int, int]] = []
        pos = start
        for part in text[start:end].split(" "):
            if part:
                bounds.append((pos, pos + len(part)))
            pos += len(part) + 1
        if len(bounds) < 2 or len(bounds) > 8:
            return []
        out: list[Hit] = []
        i = 0
        while i < len(bounds):
            found = False
            for j in range(len(bounds) - 1, i - 1, -1):
                if i == 0 and j == len(bounds) - 1:
                    continue  # the whole run was already tried
                s, e = bounds[i][0], bounds[j][1]
                for det in self._by_kind.get("number", ()):
                    hits = det.validate(text, s, e, "number")
                    if hits:
                        out.extend(hits)
                        found = True
                        break
                if found:
                    i = j + 1
                    break
            if not found:
                i += 1
        return out

    # -- records ---------------------------------------------------------------------------------

    def scan_record(self, record: Any, index: int = 0, *, copy_record: bool = True) -> RecordScan:
        """Scan one decoded JSON record. ``index`` is the record number reported in findings.

        Returns the decision and a redacted copy (or the input object itself when nothing changed;
        with ``copy_record=False`` the input object is redacted in place).
        """
        slots: list[_Slot] = []
        owners: list[_Owner] = []
        holder = [record]
        _collect(record, holder, 0, (), slots, owners, None, 0)
        hits_per_slot = self._find_many([s.text for s in slots])
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
        classification = self.policy.classifications[keep_rank]
        if not changed:
            return RecordScan(index, action, record, findings, False, classification)
        if copy_record:
            holder = [copy.deepcopy(record)]
            slots, owners = [], []
            _collect(holder[0], holder, 0, (), slots, owners, None, 0)
        _apply(slots, hits_per_slot, owners)
        return RecordScan(index, action, holder[0], findings, True, classification)

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
        if depth < _NESTED_JSON_DEPTH and len(value) > 1 and value[0] in "{[" and value[-1] in "}]":
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
            if isinstance(decoded, (dict, list)):
                inner = _Owner(container, key, decoded, owner)
                owners.append(inner)
                _collect(decoded, None, 0, (*path, "<json>"), slots, owners, inner, depth + 1)
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


def _apply(slots: list[_Slot], hits_per_slot: list[list[Hit]], owners: list[_Owner]) -> None:
    renames: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}
    for slot, hits in zip(slots, hits_per_slot, strict=True):
        spans = [h for h in hits if h.detector.action != "allow"]
        if not spans:
            continue
        text = slot.text
        for h in sorted(spans, key=lambda h: h.start, reverse=True):
            text = text[: h.start] + h.detector.placeholder + text[h.end :]
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
            own.container[key] = json.dumps(own.decoded, ensure_ascii=False)
            if own.parent is not None:
                own.parent.dirty = True


def _resolve(hits: list[Hit]) -> list[Hit]:
    """Keep non-overlapping hits: earliest first, then longest, then by detector priority."""
    hits.sort(key=lambda h: (h.start, h.start - h.end, h.detector.priority))
    out: list[Hit] = []
    last_end = -1
    for h in hits:
        if h.start >= last_end:
            out.append(h)
            last_end = h.end
    return out


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
