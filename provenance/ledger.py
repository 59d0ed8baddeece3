"""An append-only, hash-chained JSONL ledger.

Each line is the RFC 8785 canonical JSON of one entry::

    {"seq": 3, "time": "2026-11-25T21:00:00.123456Z", "kind": "log", "data": {...},
     "prev": "<hash of entry 2>", "hash": "<sha256 of this entry without 'hash'>"}

``hash`` covers every other field, ``prev`` links to the previous entry (64 zeros for the first),
and ``seq`` counts from 0. Editing a line breaks its own ``hash``; deleting, inserting or reordering
lines breaks ``seq``/``prev``; truncation is caught by comparing the head with the one recorded in the
signed statement (``expected_head``/``expected_entries``).

The verifier checks bytes, not parsed JSON: a line is valid only if it is exactly the canonical
serialization of its content (so a re-ordered key, added whitespace, a ``\\u`` escape, ``0.0`` for ``0``,
a BOM or a CRLF are reported although the parsed content and its hash would still match), and a
duplicate key (which readers resolve differently) is refused outright.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any, BinaryIO, Literal, NoReturn

from bastion.errors import LedgerError, LedgerVerificationError
from bastion.provenance.canonical import canonical_json

GENESIS = "0" * 64
_MAX_SAFE_INT = 2**53 - 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
FsyncPolicy = Literal["always", "interval", "never"]


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 of an entry's canonical JSON, the ``hash`` field itself left out."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


_second: tuple[int, str] = (-1, "")  # whole seconds and their "%Y-%m-%dT%H:%M:%S" form, reused within a second


def utc_now() -> str:
    """Now in UTC as ``2026-11-25T21:00:00.123456Z``.

    Called per ledger entry on the training thread, where (caches cold after each step) strftime
    costs ~20 µs; the date and time of day are formatted once per second.
    """
    global _second
    ns = time.time_ns()
    sec, us = ns // 1_000_000_000, ns // 1_000 % 1_000_000
    cached = _second  # one read: another thread may replace the tuple, never half of it
    if cached[0] != sec:
        cached = _second = (sec, datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{cached[1]}.{us:06d}Z"


@dataclass(frozen=True)
class LedgerHead:
    """Where a ledger ends: number of entries and the hash of the last one."""

    entries: int
    head: str


class Ledger:
    """Appends hash-chained entries to a JSONL file; safe to share between threads.

    ``fsync``: ``"always"`` syncs after every entry (audit logs), ``"interval"`` at most every
    ``fsync_interval`` seconds and on close (training logs), ``"never"`` leaves it to the OS.
    Opening an existing ledger resumes its chain after verifying it.

    Durability: :meth:`append` hands the entry's line to the OS (one ``write(2)``) before it returns,
    so a crash of the process loses nothing it returned from; a crash of the machine can lose what
    the fsync policy has not synced yet. :meth:`submit` (per-step training logs) returns before the
    entry is written: a writer thread writes what was submitted every ``SUBMIT_WRITE_INTERVAL``
    (0.25 s), and every
    :meth:`append`, :meth:`sync`, :attr:`head` and :meth:`close` first writes all submitted entries,
    in submission order. A process killed before that loses those entries, as a machine crash
    loses unsynced ones; with ``fsync="always"`` :meth:`submit` is :meth:`append`.
    """

    SUBMIT_WRITE_INTERVAL = 0.25
    """Seconds between the writer thread's writes of submitted entries."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fsync: FsyncPolicy = "interval",
        fsync_interval: float = 5.0,
    ) -> None:
        if fsync not in ("always", "interval", "never"):
            raise LedgerError(f"unknown fsync policy {fsync!r}; use 'always', 'interval' or 'never'")
        self.path = Path(path)
        self.fsync = fsync
        self.fsync_interval = fsync_interval
        self._lock = threading.Lock()
        self._last_sync = time.monotonic()
        self._pending: deque[tuple[str, dict[str, Any], str]] = deque()  # submitted, not yet written
        self._wake: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._failed: LedgerError | None = None  # a submitted entry that could not be written
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(f"cannot create the ledger directory {self.path.parent}: {exc.strerror or exc}") from None
        if self.path.exists() and self.path.stat().st_size > 0:
            # A torn last line (a crash or full disk mid-write) raises LedgerTornError here, naming the
            # byte and `bastion ledger repair`: appending after it would glue the next entry to it.
            head = verify_ledger(self.path)
            self._seq, self._head = head.entries, head.head
        else:
            self._seq, self._head = 0, GENESIS
        try:
            # Unbuffered: an entry reaches the OS in one write(2), nothing waits in a user-space buffer.
            self._fh = open(self.path, "ab", buffering=0)  # noqa: SIM115 - kept open for the ledger's lifetime
            self._size = os.fstat(self._fh.fileno()).st_size  # where the last whole line ends
        except OSError as exc:
            raise LedgerError(f"cannot open the ledger {self.path} for appending: {exc.strerror or exc}") from None

    @property
    def head(self) -> LedgerHead:
        with self._lock:
            if self._pending and not self._fh.closed:
                self._drain()
            return LedgerHead(entries=self._seq, head=self._head)

    def append(self, kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Append one entry and return it (with its ``hash``); submitted entries are written first."""
        with self._lock:
            self._check_open()
            if self._pending:
                self._drain()
                self._check_open()  # a submitted entry failed: say so before writing this one
            return self._write(kind, data or {}, utc_now())

    def submit(self, kind: str, data: dict[str, Any] | None = None) -> None:
        """Queue one entry for the writer thread and return at once (``data`` must not change afterwards).

        The entry gets its time now and its place in the chain in submission order. An entry that
        cannot be written makes the next :meth:`append`, :meth:`submit` or :meth:`sync` raise (once, before
        writing anything of its own).
        """
        if self.fsync == "always":
            self.append(kind, data)
            return
        if self._failed is not None or self._fh.closed:
            with self._lock:
                self._check_open()
        self._pending.append((kind, data or {}, utc_now()))
        if self._writer is None:
            with self._lock:
                if self._writer is None:
                    self._writer = threading.Thread(target=self._write_submitted, name="bastion-ledger", daemon=True)
                    self._writer.start()

    def _write_submitted(self) -> None:
        # Wakes every SUBMIT_WRITE_INTERVAL and writes what was submitted in one go: per entry that is
        # cheaper (warm caches) and takes the GIL from the training thread once, not once per step.
        while True:
            try:
                if not self._wake.get(timeout=self.SUBMIT_WRITE_INTERVAL):
                    return
            except queue.Empty:
                pass
            with self._lock:
                if self._fh.closed:
                    return
                if self._pending:
                    self._drain()

    def _check_open(self) -> None:
        if self._fh.closed:
            raise LedgerError(f"ledger {self.path} is closed")
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    def _drain(self) -> None:
        """Write the submitted entries in one write (lock held); a failure is kept for the next caller to raise."""
        seq, head = self._seq, self._head
        lines: list[bytes] = []
        while self._pending:
            kind, data, stamp = self._pending.popleft()
            try:
                lines.append(self._encode(kind, data, stamp)[1])
            except LedgerError as exc:
                if self._failed is None:
                    self._failed = exc
        if lines:
            try:
                self._write_line(b"".join(lines))
            except LedgerError as exc:  # none of them was written: the chain stays where it was
                self._seq, self._head = seq, head
                if self._failed is None:
                    self._failed = exc
                return
            try:
                self._maybe_sync()
            except LedgerError as exc:
                if self._failed is None:
                    self._failed = exc

    def _encode(self, kind: str, payload: dict[str, Any], stamp: str) -> tuple[dict[str, Any], bytes]:
        """The next entry and its line; advances the chain (lock held)."""
        seq, prev = self._seq, self._head
        try:
            # One serialization serves both: the keys sort as data < hash < kind < prev < seq < time,
            # so the line is the hashed body with '"hash":"…",' inserted after the data.
            head = b'{"data":' + canonical_json(payload) + b","
            kind_json = encode_basestring(kind) if type(kind) is str else canonical_json(kind).decode()
            # prev is hex, seq an int and the time ASCII digits: their canonical forms are literal.
            tail = f'"kind":{kind_json},"prev":"{prev}","seq":{seq},"time":"{stamp}"}}'.encode()
        except Exception as exc:
            raise LedgerError(f"ledger entry {kind!r} is not representable as canonical JSON: {exc}") from None
        digest = hashlib.sha256(head + tail).hexdigest()
        line = b"".join((head, b'"hash":"', digest.encode(), b'",', tail, b"\n"))
        entry = {"seq": seq, "time": stamp, "kind": kind, "data": payload, "prev": prev, "hash": digest}
        self._seq, self._head = seq + 1, digest
        return entry, line

    def _write(self, kind: str, payload: dict[str, Any], stamp: str) -> dict[str, Any]:
        """Serialize, chain and write one entry (lock held)."""
        seq, head = self._seq, self._head
        entry, line = self._encode(kind, payload, stamp)
        try:
            self._write_line(line)
        except LedgerError:
            self._seq, self._head = seq, head
            raise
        self._maybe_sync()  # may raise; the entry is written and chained either way
        return entry

    def _write_line(self, data: bytes) -> None:
        """Write whole lines, or nothing: a failed or short write is cut back to the last whole line."""
        try:
            view = memoryview(data)
            while view:  # a raw write may be partial (a signal, a nearly full disk): finish it
                written = self._fh.write(view)
                if not written:
                    raise OSError(f"no progress writing {len(view)} bytes")
                view = view[written:]
        except OSError as exc:
            self._cut_back(exc)
        self._size += len(data)

    def _maybe_sync(self) -> None:
        """fsync as the policy says (lock held, after the chain has advanced over what was written)."""
        now = time.monotonic()
        if self.fsync == "always" or (self.fsync == "interval" and now - self._last_sync >= self.fsync_interval):
            try:
                os.fsync(self._fh.fileno())
            except OSError as exc:  # the entries are written (the OS has them); only their sync failed
                raise LedgerError(f"cannot sync the ledger {self.path}: {exc.strerror or exc}") from None
            self._last_sync = now

    def _cut_back(self, exc: OSError) -> NoReturn:
        """After a failed write: truncate to the last whole line, so the chain stays appendable; then raise."""
        reason = exc.strerror or str(exc)
        try:
            os.ftruncate(self._fh.fileno(), self._size)
        except (OSError, ValueError) as cut:
            # The file may now end in a partial line: stop writing to it, say how to repair it.
            self._fh.close()
            raise LedgerError(
                f"cannot write to the ledger {self.path}: {reason}; cutting the partial entry back to byte"
                f" {self._size} also failed ({getattr(cut, 'strerror', None) or cut}), so the ledger is closed",
                hint=f"free disk space, then run `bastion ledger repair {self.path}` before writing to it again",
            ) from None
        raise LedgerError(
            f"cannot write to the ledger {self.path}: {reason} (what was written of the entry was cut off;"
            f" the ledger still ends with its last whole entry, at byte {self._size})",
            hint="free disk space (or fix the file system) and retry; nothing of the failed entry was kept",
        ) from None

    def sync(self) -> None:
        """Flush and fsync now (group commit: append several entries with fsync="never", then sync once)."""
        with self._lock:
            self._check_open()
            self._drain()
            self._check_open()
            try:
                os.fsync(self._fh.fileno())
            except OSError as exc:
                raise LedgerError(f"cannot sync the ledger {self.path}: {exc.strerror or exc}") from None
            self._last_sync = time.monotonic()

    def close(self) -> None:
        """Write submitted entries, sync (unless fsync="never") and close; stops the writer thread."""
        writer = self._writer
        with self._lock:
            if self._fh.closed:
                return
            try:
                self._drain()
                if self.fsync != "never":
                    os.fsync(self._fh.fileno())
            finally:
                self._fh.close()
                self._wake.put(False)
        if writer is not None and writer is not threading.current_thread():
            writer.join()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _NotALedgerValue(ValueError):
    """A JSON value the ledger writer never produces (duplicate key, NaN, an over-long number)."""


# The writer refuses integers beyond ±(2**53 - 1) and writes floats with at most 309 integer digits
# (1.8e308 is written as 1.8e+308): a longer digit run cannot come from it. Refusing it before int()
# also keeps Python's 4,300-digit conversion limit (a ValueError) out of the verifier.
_MAX_NUMBER_CHARS = 400


def _parse_int(text: str) -> int | float:
    # RFC 8785 writes an integral float below 1e21 as plain digits (5.5e16 -> 55000000000000000). Beyond
    # 2**53 such digits can only come from a float (the writer refuses larger integers), and only as a
    # float do they canonicalize again (to the same digits), so the entry's hash can be checked.
    if len(text) < 16:
        return int(text)
    if len(text) > _MAX_NUMBER_CHARS:
        raise _NotALedgerValue(f"a number with {len(text)} digits")
    value = int(text)
    return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else float(text)


def _parse_float(text: str) -> float:
    if len(text) > _MAX_NUMBER_CHARS:
        raise _NotALedgerValue(f"a number of {len(text)} characters")
    return float(text)


def _no_constants(name: str) -> Any:
    raise _NotALedgerValue(f"{name} (not a JSON number)")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _NotALedgerValue("the same key twice in one object (readers would disagree on which copy counts)")
    return out


_DECODER = json.JSONDecoder(
    parse_int=_parse_int, parse_float=_parse_float, parse_constant=_no_constants, object_pairs_hook=_unique_keys
)
_DAMAGED = "the ledger was modified or damaged; restore it from the signed run record"


class LedgerTornError(LedgerVerificationError):
    """The ledger ends in a partial line (a crash or a full disk mid-write); ``offset`` is where it starts."""

    def __init__(self, path: Path, line: int, offset: int, size: int) -> None:
        super().__init__(
            f"the last line is torn: {size - offset} bytes from byte {offset} on are not a whole entry"
            " (a crash or a full disk interrupted a write)",
            path=path,
            line=line,
            hint=f"run `bastion ledger repair {path}` to cut the torn line and record that it was cut,"
            " or restore the ledger from the signed run record",
        )
        self.offset = offset
        self.size = size


def _open_for_reading(p: Path) -> BinaryIO:
    try:
        return open(p, "rb")
    except FileNotFoundError:
        raise LedgerError(f"ledger not found: {p}") from None
    except IsADirectoryError:
        raise LedgerError(f"cannot read the ledger {p}: it is a directory, not a .jsonl file") from None
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger {p}: {exc.strerror or exc}") from None


def _decode_line(raw: bytes, p: Path, lineno: int) -> dict[str, Any]:
    """The entry on one whole line (without its ``\\n``), checked to be exactly the bytes the writer produces."""
    if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
        raise LedgerVerificationError(
            "line starts with a byte-order mark, which the ledger writer never writes",
            path=p,
            line=lineno,
            hint=_DAMAGED,
        )
    if raw.endswith(b"\r"):
        raise LedgerVerificationError(
            "line ends with CR LF; the ledger writer ends lines with LF only", path=p, line=lineno, hint=_DAMAGED
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LedgerVerificationError(
            f"line is not valid JSON: not valid UTF-8 at byte {exc.start + 1}", path=p, line=lineno, hint=_DAMAGED
        ) from None
    try:
        entry = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        raise LedgerVerificationError(
            f"line is not valid JSON: {exc.msg} (column {exc.colno})", path=p, line=lineno, hint=_DAMAGED
        ) from None
    except _NotALedgerValue as exc:
        raise LedgerVerificationError(
            f"line holds {exc}, which the ledger writer never writes", path=p, line=lineno, hint=_DAMAGED
        ) from None
    except RecursionError:
        raise LedgerVerificationError(
            "line is nested too deeply to be a ledger entry", path=p, line=lineno, hint=_DAMAGED
        ) from None
    except ValueError as exc:  # any other number the json module cannot convert
        raise LedgerVerificationError(
            f"line is not valid JSON: {type(exc).__name__}", path=p, line=lineno, hint=_DAMAGED
        ) from None
    if not isinstance(entry, dict):
        raise LedgerVerificationError("line is not a ledger entry (JSON object)", path=p, line=lineno, hint=_DAMAGED)
    return entry


def _canonical_problem(raw: bytes, entry: dict[str, Any]) -> str | None:
    """Why ``raw`` is not the canonical serialization of ``entry`` (None when it is)."""
    try:
        canon = canonical_json(entry)
    except (ValueError, TypeError, RecursionError):
        return "its content has no canonical JSON form (the ledger writer cannot have written it)"
    if canon == raw:
        return None
    at = next((i for i, (a, b) in enumerate(zip(raw, canon, strict=False)) if a != b), min(len(raw), len(canon)))
    return (
        "its bytes are not the canonical JSON the ledger writer produces (from byte"
        f" {at + 1} on: key order, spacing, escapes, number form or a duplicate were changed)"
    )


def read_entries(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, entry) for each line; raises for an unreadable file, a torn last line or a non-entry line.

    Strict: a line must be one JSON object without duplicate keys, NaN or over-long numbers, and the
    file must end with a newline (a torn last line raises :class:`LedgerTornError`).
    """
    for lineno, _offset, raw, entry in _read_lines(Path(path)):
        del raw
        yield lineno, entry


def _read_lines(p: Path) -> Iterator[tuple[int, int, bytes, dict[str, Any]]]:
    """(line number, byte offset, raw line without its newline, entry) for each line."""
    offset = 0
    with _open_for_reading(p) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.endswith(b"\n"):
                raise LedgerTornError(p, lineno, offset, offset + len(raw))
            body = raw[:-1]
            yield lineno, offset, body, _decode_line(body, p, lineno)
            offset += len(raw)


def _body_hash(raw: bytes, stated: Any) -> str | None:
    """SHA-256 of the hashed body of a canonical line: the line without its ``"hash":"…",`` member.

    In canonical form the keys are sorted (data < hash < kind < prev < seq < time), so the top-level
    ``hash`` member is the last occurrence of that text (nothing after it can contain an unescaped
    quote sequence like it): cutting it out gives ``canonical_json(body)`` without serializing again.
    """
    if type(stated) is not str or not _HEX64.fullmatch(stated):
        return None
    member = b'"hash":"' + stated.encode() + b'",'
    at = raw.rfind(member)
    if at < 0:  # pragma: no cover - a canonical line with its fields always has it
        return None
    return hashlib.sha256(raw[:at] + raw[at + len(member) :]).hexdigest()


def verify_ledger(
    path: str | os.PathLike[str],
    *,
    expected_head: str | None = None,
    expected_entries: int | None = None,
) -> LedgerHead:
    """Verify the chain; return its head, or raise for the first broken line.

    With ``expected_head``/``expected_entries`` (from a signed statement) a ledger that was
    truncated, or extended after signing, is detected too.
    """
    p = Path(path)
    prev, seq = GENESIS, 0
    lineno = 0
    hint = "the ledger was modified after it was written; restore it from the signed run record"
    for lineno, _offset, raw, entry in _read_lines(p):
        missing = {"seq", "time", "kind", "data", "prev", "hash"} - entry.keys()
        if missing:
            raise LedgerVerificationError(f"entry lacks field(s) {sorted(missing)}", path=p, line=lineno, hint=hint)
        problem = _canonical_problem(raw, entry)
        if problem is not None:
            raise LedgerVerificationError(f"line was rewritten: {problem}", path=p, line=lineno, hint=hint)
        if _body_hash(raw, entry["hash"]) != entry["hash"]:
            raise LedgerVerificationError(
                "entry was edited: its content does not match its hash", path=p, line=lineno, hint=hint
            )
        if entry["seq"] != seq:
            raise LedgerVerificationError(
                f"sequence number is {entry['seq']}, expected {seq} (an entry was deleted, inserted or moved)",
                path=p,
                line=lineno,
                hint=hint,
            )
        if entry["prev"] != prev:
            raise LedgerVerificationError(
                "entry does not link to the previous one (an entry was deleted, inserted or moved)",
                path=p,
                line=lineno,
                hint=hint,
            )
        prev, seq = entry["hash"], seq + 1
    head = LedgerHead(entries=seq, head=prev)
    if expected_entries is not None and seq != expected_entries:
        # The offending line: the first missing one (truncated) or the first one not covered by the signature.
        if seq < expected_entries:
            what, bad_line = f"truncated: entries from line {seq + 1} on are missing", seq + 1
        else:
            what, bad_line = f"extended: lines from {expected_entries + 1} on were added", expected_entries + 1
        raise LedgerVerificationError(
            f"ledger has {seq} entries but the signed statement records {expected_entries} (it was {what})",
            path=p,
            line=bad_line,
            hint=hint,
        )
    if expected_head is not None and prev != expected_head:
        raise LedgerVerificationError(
            f"ledger head is {prev[:16]}… but the signed statement records {expected_head[:16]}…",
            path=p,
            line=max(lineno, 1),
            hint=hint,
        )
    return head


@dataclass(frozen=True)
class LedgerRepair:
    """What :func:`repair_ledger` cut and recorded."""

    cut_at: int
    """Byte offset where the torn line began (the file's new end before the repair entry)."""
    cut_bytes: int
    cut_sha256: str
    entry: dict[str, Any]
    """The ``ledger.repair`` entry appended to record the cut."""


REPAIR_KIND = "ledger.repair"


def repair_ledger(path: str | os.PathLike[str]) -> LedgerRepair | None:
    """Cut a torn last line off a ledger and record that it was cut; ``None`` when nothing is torn.

    Only a torn *last* line is repaired, and only when every whole line before it verifies: any
    other damage is tampering or corruption that a repair must not paper over, and raises
    :class:`~bastion.errors.LedgerVerificationError`. The appended ``ledger.repair`` entry (chained like
    any other) records where the cut was, how many bytes were cut and their SHA-256 — never the
    bytes themselves, which may hold anything the interrupted entry carried.
    """
    p = Path(path)
    try:
        verify_ledger(p)
        return None
    except LedgerTornError as torn:
        cut_at = torn.offset
    try:
        with open(p, "r+b") as fh:
            fh.seek(cut_at)
            cut = fh.read()
            fh.truncate(cut_at)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise LedgerError(f"cannot repair the ledger {p}: {exc.strerror or exc}") from None
    digest = hashlib.sha256(cut).hexdigest()
    with Ledger(p, fsync="always") as led:
        entry = led.append(
            REPAIR_KIND,
            {
                "reason": "torn last line (an interrupted write) cut off",
                "cut_at_byte": cut_at,
                "cut_bytes": len(cut),
                "cut_sha256": digest,
            },
        )
    return LedgerRepair(cut_at=cut_at, cut_bytes=len(cut), cut_sha256=digest, entry=entry)
