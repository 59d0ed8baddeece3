"""Streaming JSONL scanning: bytes in, redacted bytes out, bounded memory.

Lines are split on ``\\n`` (a byte that never occurs inside a multi-byte UTF-8 sequence), so chunks may
be cut anywhere. Each complete line is decoded (strict UTF-8, strict JSON by the rules of
:mod:`bastion.policies.json_rules`), scanned by the engine and
written back: byte-identical when nothing was redacted, re-serialized JSON otherwise. At most one line
(``max_line_bytes``) is buffered.

Single JSON documents (request bodies) go through :func:`scan_json_body` (or :func:`parse_json_strict` +
:func:`scan_json_value`), which apply the same rules.
"""

from __future__ import annotations

import hashlib
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, NamedTuple, NoReturn

from bastion.policies.engine import PolicyEngine, RecordScan
from bastion.policies.errors import ScanError
from bastion.policies.json_rules import (
    FAST_DECODER,
    MAX_INT_DIGITS,
    STRICT_DECODER,
    BadNumber,
    DuplicateKey,
    NeedsScan,
    NotJson,
    decode,
)
from bastion.policies.model import ACTION_ORDER

DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


@dataclass(slots=True)
class RecordDetail:
    """What was found in one record (types and counts only)."""

    record: int
    line: int
    action: str
    entities: dict[str, int]
    rule_ids: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "line": self.line,
            "action": self.action,
            "entities": dict(self.entities),
            "rule_ids": list(self.rule_ids),
        }


@dataclass(slots=True)
class ScanSummary:
    """Totals of a scan. Contains counts, numbers and rule ids only, never personal data."""

    source: str
    records: int = 0
    lines: int = 0
    redacted_records: int = 0
    blocked_records: list[int] = field(default_factory=list)
    blocked_records_total: int = 0
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # entity -> action -> findings
    rule_ids: set[str] = field(default_factory=set)
    classification: str | None = None
    input_bytes: int = 0
    output_bytes: int = 0
    input_sha256: str = ""
    output_sha256: str = ""
    details: list[RecordDetail] = field(default_factory=list)
    details_truncated: bool = False
    complete: bool = False

    @property
    def decision(self) -> str:
        if self.blocked_records_total:
            return "block"
        if self.redacted_records:
            return "redact"
        return "allow"

    @property
    def findings(self) -> int:
        return sum(n for per in self.counts.values() for n in per.values())

    @property
    def entity_counts(self) -> dict[str, int]:
        """Findings per entity type."""
        return {entity: sum(per.values()) for entity, per in sorted(self.counts.items())}

    @property
    def action_counts(self) -> dict[str, int]:
        """Findings per action (allow / redact / block)."""
        out: dict[str, int] = {}
        for per in self.counts.values():
            for action, n in per.items():
                out[action] = out.get(action, 0) + n
        return dict(sorted(out.items()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "decision": self.decision,
            "records": self.records,
            "lines": self.lines,
            "findings": self.findings,
            "redacted_records": self.redacted_records,
            "blocked_records": list(self.blocked_records),
            "blocked_records_total": self.blocked_records_total,
            "counts": {e: dict(sorted(a.items())) for e, a in sorted(self.counts.items())},
            "entity_counts": self.entity_counts,
            "action_counts": self.action_counts,
            "rule_ids": sorted(self.rule_ids),
            "classification": self.classification,
            "input_bytes": self.input_bytes,
            "output_bytes": self.output_bytes,
            "input_sha256": self.input_sha256,
            "output_sha256": self.output_sha256,
            "details": [d.as_dict() for d in self.details],
            "details_truncated": self.details_truncated,
        }


class JsonlScanner:
    """Incremental JSONL scanner/redactor (see module doc). Not thread-safe; one per upload."""

    def __init__(
        self,
        engine: PolicyEngine,
        *,
        source: str = "<input>",
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        max_details: int = 1000,
        max_blocked_listed: int = 1000,
        line_offset: int = 0,
        record_offset: int = 0,
        part: bool = False,
    ) -> None:
        """``line_offset`` / ``record_offset``: lines and records before this input (one part of a larger
        file, see :mod:`bastion.policies.parallel`): lines and records are numbered after them, and a byte
        order mark is accepted only on line 1 of the whole file. ``part``: this input is one part of a larger
        one, so :meth:`finish` accepts a part without records (the caller checks the whole). The summary's
        totals count this input only."""
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        if line_offset < 0 or record_offset < 0:
            raise ValueError("line_offset and record_offset must not be negative")
        self.engine = engine
        self.source = source
        self.max_line_bytes = max_line_bytes
        self.max_details = max_details
        self.max_blocked_listed = max_blocked_listed
        self._buf = bytearray()
        self._line = line_offset
        self._record_offset = record_offset
        self._part = part
        self._in_hash = hashlib.sha256()
        self._out_hash = hashlib.sha256()
        self._failed: ScanError | None = None
        self._finished = False
        self._keep_rank = engine.rank(engine.policy.default_classification)
        self._may_contain = engine.line_checker()
        self._models = engine.blocking  # a model runs once per chunk over all its records (engine.prefetched)
        self.summary = ScanSummary(source=source)
        self.last_results: list[RecordScan] = []  # results of the lines completed by the last feed()

    # -- public API ------------------------------------------------------------------------------

    def feed(self, chunk: bytes) -> bytes:
        """Consume the next chunk; return the output bytes for the lines it completed."""
        self._check_usable()
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)  # bytearray / memoryview from a reader
        self._in_hash.update(chunk)
        self.summary.input_bytes += len(chunk)
        self.last_results = []
        if b"\n" not in chunk:
            self._buf += chunk
            if len(self._buf) > self.max_line_bytes:
                self._fail(self._too_long(self._line + 1))
            return b""
        data = bytes(self._buf) + chunk if self._buf else chunk
        with self.engine.prefetched(_records_of(data, self.max_line_bytes)) if self._models else nullcontext():
            result = self._feed_lines(data)
        self._out_hash.update(result)
        self.summary.output_bytes += len(result)
        return result

    def _feed_lines(self, data: bytes) -> bytes:
        # Unchanged lines are not copied one by one: runs of them go out as slices of ``data``.
        out: list[bytes] = []
        run = 0
        pos = 0
        limit = self.max_line_bytes
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            if nl - pos > limit:
                self._fail(self._too_long(self._line + 1))
            end = nl - 1 if nl > pos and data[nl - 1] == 13 else nl  # keep "\r\n" endings as they are
            new = self._scan_line(data[pos:end])
            if new is not None:
                out.append(data[run:pos])
                out.append(new)
                run = end
            pos = nl + 1
        out.append(data[run:pos])
        rest = data[pos:]
        if len(rest) > limit:
            self._fail(self._too_long(self._line + 1))
        self._buf = bytearray(rest)
        return b"".join(out)

    def finish(self) -> bytes:
        """Process the last line (without a final newline) and close the scan. Empty input is an error."""
        self._check_usable()
        self.last_results = []
        result = b""
        if self._buf:
            last = bytes(self._buf)
            end = len(last) - 1 if last.endswith(b"\r") else len(last)
            new = self._scan_line(last[:end])
            result = last if new is None else new + last[end:]
            self._buf = bytearray()
        if self.summary.records == 0 and not self._part:
            self._fail(
                ScanError(
                    "no records: the input is empty"
                    if self.summary.input_bytes == 0
                    else "no records: only blank lines",
                    source=self.source,
                    hint="a JSONL dataset needs one JSON record per line",
                )
            )
        self._out_hash.update(result)
        self.summary.output_bytes += len(result)
        self.summary.input_sha256 = self._in_hash.hexdigest()
        self.summary.output_sha256 = self._out_hash.hexdigest()
        self.summary.classification = self.engine.policy.classifications[self._keep_rank]
        self.summary.complete = True
        self._finished = True
        return result

    @property
    def decision(self) -> str:
        return self.summary.decision

    # -- internals -------------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise self._failed
        if self._finished:
            raise RuntimeError("JsonlScanner.finish() was already called")

    def _fail(self, error: ScanError) -> NoReturn:
        self._failed = error
        raise error

    def _too_long(self, line: int) -> ScanError:
        return ScanError(
            f"line is longer than the limit of {self.max_line_bytes} bytes",
            source=self.source,
            line=line,
            hint="split the record, or raise the limit (max_line_bytes / --max-line-bytes) if it is legitimate",
        )

    def _scan_line(self, body: bytes) -> bytes | None:
        """Scan one line (without its line ending); return its replacement, or None to keep it as is."""
        summary = self.summary
        self._line = line_no = self._line + 1
        summary.lines += 1
        prefix = b""
        if line_no == 1 and body.startswith(_BOM):
            prefix, body = _BOM, body[len(_BOM) :]
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._fail(
                ScanError(
                    f"not valid UTF-8 (byte {exc.start + 1 + len(prefix)} of the line)",
                    source=self.source,
                    line=line_no,
                    hint="re-encode the file as UTF-8",
                )
            )
        if not text or text.isspace():
            return None  # blank line: no record, passed through as is
        summary.records += 1
        record_no = self._record_offset + summary.records
        if not self._may_contain(text, body):
            try:
                decode(FAST_DECODER, text)  # validate only
                return None
            except NeedsScan:
                pass  # a number in exponent form: its digits as scanned are not in the raw line
            except Exception:
                self._parse(text, line_no, record_no)  # the same error again, reported
                raise  # pragma: no cover - _parse always raises here
        engine = self.engine
        obj = self._parse(text, line_no, record_no)
        try:
            res = engine.scan_record(obj, record_no, copy_record=False)
        except RecursionError:
            self._fail(
                ScanError(
                    f"record {record_no} is nested too deeply to scan",
                    source=self.source,
                    line=line_no,
                    record=record_no,
                )
            )
        except ScanError as exc:  # a string holding JSON breaks the JSON rules (see json_rules)
            self._fail(
                ScanError(
                    f"record {record_no}: {exc.message}",
                    source=self.source,
                    line=line_no,
                    record=record_no,
                    hint=exc.hint,
                )
            )
        self.last_results.append(res)
        if res.findings:
            self._account(res, line_no)
        if not res.changed:
            return None
        try:
            encoded = _ENCODER.encode(res.record).encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates from \ud800-style escapes: keep them escaped
            encoded = _ASCII_ENCODER.encode(res.record).encode("ascii")
        return prefix + encoded

    def _parse(self, text: str, line_no: int, record_no: int) -> Any:
        try:
            return decode(STRICT_DECODER, text)
        except (json.JSONDecodeError, DuplicateKey, BadNumber, RecursionError) as exc:
            problem = _json_problem(exc)
            self._fail(
                ScanError(
                    f"record {record_no} {problem.message}",
                    source=self.source,
                    line=line_no,
                    record=record_no,
                    hint=problem.hint,
                )
            )
        except ValueError:  # Python's int() limit (more than 4,300 digits), should the decoder's own cap miss it
            self._fail(
                ScanError(
                    f"record {record_no} holds a number too long to read (more than 4300 digits)",
                    source=self.source,
                    line=line_no,
                    record=record_no,
                    hint="a fine-tuning record has no use for such a number; remove it",
                )
            )

    def _account(self, res: RecordScan, line_no: int) -> None:
        s = self.summary
        entities: dict[str, int] = {}
        rules: list[str] = []
        engine = self.engine
        for f in res.findings:
            per = s.counts.setdefault(f.entity, {})
            per[f.action] = per.get(f.action, 0) + 1
            entities[f.entity] = entities.get(f.entity, 0) + 1
            if f.rule_id not in rules:
                rules.append(f.rule_id)
        s.rule_ids.update(rules)
        if res.classification is not None:
            self._keep_rank = max(self._keep_rank, engine.rank(res.classification))
        if res.action == "block":
            s.blocked_records_total += 1
            if len(s.blocked_records) < self.max_blocked_listed:
                s.blocked_records.append(res.index)
        elif res.changed:
            s.redacted_records += 1
        if ACTION_ORDER[res.action] > 0 or entities:
            if len(s.details) < self.max_details:
                s.details.append(RecordDetail(res.index, line_no, res.action, entities, rules))
            else:
                s.details_truncated = True


class _Problem(NamedTuple):
    message: str  # completes "record N ..." / "the JSON body ..."
    hint: str | None


def _records_of(data: bytes, max_line_bytes: int) -> list[Any]:
    """The records of the complete lines of a chunk that parse as JSON (for a model's batched run). A line
    over the length limit, one that does not parse or one nested too deeply is left out: its own scan
    reports it with a clear error (and an over-long line is never parsed)."""
    out = []
    for line in data[: data.rfind(b"\n") + 1].splitlines():
        if line.strip() and len(line) <= max_line_bytes:
            try:
                out.append(json.loads(line))
            except (ValueError, RecursionError):
                continue
    return out


def _json_problem(exc: BaseException) -> _Problem:
    """What is wrong with a JSON text, in words that never quote it."""
    if isinstance(exc, json.JSONDecodeError):
        return _Problem(
            f"is not valid JSON: {exc.msg} (column {exc.colno})", "each line must be one complete JSON value"
        )
    if isinstance(exc, DuplicateKey):
        return _Problem(
            f"has the key {exc.key_repr} twice in one object",
            "duplicate keys are ambiguous (readers keep different copies); remove one",
        )
    if isinstance(exc, NotJson):
        return _Problem(f"is not valid JSON: {exc.args[0]}", "use null or a string for special values")
    if isinstance(exc, BadNumber):
        return _Problem(
            f"is not accepted: {exc.args[0]}",
            "JSON numbers must be finite and at most "
            f"{MAX_INT_DIGITS} digits long; send longer or special values as strings",
        )
    return _Problem("is nested too deeply", None)


def parse_json_strict(data: bytes | str, *, source: str = "<body>") -> Any:
    """Decode one JSON document by the JSON rules (see :mod:`bastion.policies.json_rules`): strict UTF-8
    (no BOM), duplicate keys refused at every level, ``NaN``/``Infinity``/overflowing numbers and integers
    over ``MAX_INT_DIGITS`` digits refused. Raises :class:`ScanError` (never ``ValueError`` or
    ``RecursionError``); the message never quotes the document."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ScanError(
                f"the JSON document is not valid UTF-8 (byte {exc.start + 1})", source=source, hint="send UTF-8"
            ) from None
    else:
        text = data
    if text.startswith("\ufeff"):
        raise ScanError("the JSON document starts with a byte order mark", source=source, hint="send it without one")
    try:
        return decode(STRICT_DECODER, text)
    except (json.JSONDecodeError, DuplicateKey, BadNumber, RecursionError) as exc:
        problem = _json_problem(exc)
        raise ScanError(f"the JSON document {problem.message}", source=source, hint=problem.hint) from None


def scan_json_value(
    engine: PolicyEngine,
    value: Any,
    *,
    index: int = 1,
    source: str = "<body>",
    opaque: frozenset[tuple[str, str]] = frozenset(),
) -> RecordScan:
    """Scan one decoded JSON value (from :func:`parse_json_strict`) with the JSON rules: every string and
    key, JSON numbers as their digit strings (a redacted number becomes a string such as ``"[PHONE]"``),
    JSON inside strings decoded and scanned to ``MAX_NESTED_JSON_DEPTH`` levels. ``value`` is not modified:
    ``.record`` of the result is a redacted copy, or ``value`` itself when nothing changed.
    ``opaque``: (path, value) pairs not scanned (see :meth:`PolicyEngine.scan_record`).
    Raises :class:`ScanError` for JSON inside strings that breaks the rules or is nested too deeply."""
    try:
        return engine.scan_record(value, index, opaque=opaque)
    except ScanError as exc:
        raise ScanError(exc.message, source=source, hint=exc.hint) from None
    except RecursionError:
        raise ScanError("the JSON document is nested too deeply to scan", source=source) from None


@dataclass(slots=True)
class JsonScan:
    """Result of :func:`scan_json_body`: ``body`` is what may be forwarded (when ``result.action`` allows):
    the input bytes when nothing was redacted, else the redacted document as compact UTF-8 JSON."""

    result: RecordScan
    body: bytes

    @property
    def action(self) -> str:
        return self.result.action

    @property
    def changed(self) -> bool:
        return self.result.changed


def scan_json_body(
    engine: PolicyEngine,
    data: bytes | str,
    *,
    index: int = 1,
    source: str = "<body>",
    opaque: frozenset[tuple[str, str]] = frozenset(),
) -> JsonScan:
    """:func:`parse_json_strict` + :func:`scan_json_value` + serialization. Raises :class:`ScanError`."""
    value = parse_json_strict(data, source=source)
    res = scan_json_value(engine, value, index=index, source=source, opaque=opaque)
    if not res.changed:
        body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        return JsonScan(res, body)
    try:
        return JsonScan(res, _ENCODER.encode(res.record).encode("utf-8"))
    except UnicodeEncodeError:  # lone surrogates from \ud800-style escapes: keep them escaped
        return JsonScan(res, _ASCII_ENCODER.encode(res.record).encode("ascii"))


# What json.dumps(obj, ensure_ascii=...) builds per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False)
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True)
