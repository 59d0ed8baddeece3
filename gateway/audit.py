"""The audit log: every gateway decision appended to a hash-chained, segmented ledger, durable per entry.

Entries are written by one dedicated thread, in order (group commit: all waiting entries, then one
fsync). :meth:`AuditLog.record` returns only after its entry is fsynced, so an outcome (a file or
job id handed to the client) is on disk before the client gets its answer. When the log cannot be
written (a full disk, an I/O error) ``record`` raises :class:`AuditUnavailable`: pass-through routes
answer 503 instead of answering unaudited, and :meth:`AuditLog.ensure_available` lets them refuse
before forwarding while the log is known to be failing.

A failed or short write never leaves a partial line behind: the batch is cut back to the last whole
entry (the file is truncated to where the batch began) and the chain resumes from the file, so the
next entry is appended to a clean line and the gateway starts again after a full disk. (This is the
audit's own handling; ``bastion ledger repair`` is for a torn line left by a crash, and only runs
when an operator asks for it.)

The outcome wording says exactly whether bytes reached the upstream:

=============================  ===============================================================
``forwarded``                  the request went upstream and the upstream answered
``forwarded_no_answer``        bytes were sent upstream but no (complete) answer came back
``refused_before_forwarding``  no byte of the request left the gateway
=============================  ===============================================================

Segments (see :mod:`bastion.gateway.audit_segments`): rotation by size or entry count, each segment
chained to the previous one, start-up reads only the active segment.

What is recorded: time (the ledger's), a fingerprint of the client's credential (first 16 hex digits
of its SHA-256, never the credential), route, upstream, upload digests, record counts, counts per
entity type and action, rule ids and the decision. Never a token, a provider key or personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Final, Literal

from bastion.errors import GatewayError, LedgerError
from bastion.gateway.audit_segments import (
    SEGMENT_KIND,
    first_entry,
    sealed_path,
    sealed_segments,
    segment_header,
)
from bastion.provenance.canonical import canonical_json
from bastion.provenance.ledger import Ledger, verify_ledger

log = logging.getLogger("bastion.gateway.audit")

ENTRY_KIND = "gateway.decision"
HEALTH_KIND = "gateway.audit"

Outcome = Literal["forwarded", "forwarded_no_answer", "refused_before_forwarding"]
FORWARDED: Final = "forwarded"
FORWARDED_NO_ANSWER: Final = "forwarded_no_answer"
REFUSED_BEFORE_FORWARDING: Final = "refused_before_forwarding"
OUTCOMES: frozenset[str] = frozenset({FORWARDED, FORWARDED_NO_ANSWER, REFUSED_BEFORE_FORWARDING})

DEFAULT_SEGMENT_MAX_BYTES = 64 * 1024 * 1024


class AuditUnavailable(GatewayError):
    """The audit log cannot be written now; the request must not be answered as if it were audited (503)."""


def _log_failure(fut: Future[dict[str, Any]]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("audit log append failed: %s", type(exc).__name__)


def client_fingerprint(headers: Any) -> str:
    """``sha256:<16 hex>`` of the client's bearer token / api-key header, or ``anonymous``.

    A SigV4 ``Authorization`` (AWS) changes with every request; its stable part is the access key id
    (the secret never travels), so that is what identifies the client: ``aws4:<access key id>`` hashed.
    """
    token = ""
    auth = headers.get("authorization") or ""
    if auth.startswith("AWS4-HMAC-SHA256 "):
        credential = auth.partition("Credential=")[2].split("/", 1)[0].strip()
        token = "aws4:" + credential if credential else ""
    elif auth:
        scheme, _, rest = auth.partition(" ")
        token = rest.strip() if scheme.lower() in ("bearer", "basic") and rest else auth.strip()
    if not token:
        token = (headers.get("api-key") or headers.get("x-api-key") or "").strip()
    if not token:
        return "anonymous"
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def audit_lock_path(active: Path) -> Path:
    """The lock file next to the active segment (``audit.lock``); held while a process writes the log."""
    return active.with_name(f"{active.stem}.lock")


def lock_audit_dir(active: Path) -> int:
    """Take the audit log's exclusive lock (non-blocking) and return its fd; AuditUnavailable if it is held.

    Two processes appending to one hash-chained log would interleave and break its chain, so each
    gateway process (replica or worker) needs a log of its own: the second one refuses to start.
    The lock is an ``flock`` on ``audit.lock``: the kernel drops it when the process dies, so a
    crashed replica never leaves a stale lock behind.
    """
    lock = audit_lock_path(active)
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise AuditUnavailable(
            f"cannot create the audit lock file {lock}: {exc.strerror or exc}",
            hint="fix permissions or set gateway.audit_log / gateway.state_dir",
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise AuditUnavailable(
            f"another gateway process is writing the audit log in {active.parent} (its lock {lock.name} is held)",
            hint="give every replica and worker its own audit dir: a distinct --replica-id (gateway.replica_id), "
            "or a distinct gateway.audit_log",
        ) from None
    return fd


_Item = tuple[str, dict[str, Any], "Future[dict[str, Any]]"]


class AuditLog:
    """Append-only, segmented decision log over :class:`bastion.provenance.ledger.Ledger`, durable per entry.

    ``segment_max_bytes`` / ``segment_max_entries``: the active segment is sealed and a new one
    started once it reaches either (checked after each group commit). The queue is bounded
    (``max_pending``): when the disk cannot keep up, requests wait for room.

    ``segments_read`` lists the files whose entries were read to open the log (one, whatever the
    history): start-up cost is bounded by one segment.
    """

    def __init__(
        self,
        path: Path,
        *,
        max_pending: int = 10_000,
        segment_max_bytes: int | None = DEFAULT_SEGMENT_MAX_BYTES,
        segment_max_entries: int | None = None,
    ) -> None:
        self.path = path
        self.segment_max_bytes = segment_max_bytes
        self.segment_max_entries = segment_max_entries
        self.segments_read: list[Path] = []
        self.segment = 0
        self.failures = 0
        self.available = True
        self._entries_before = 0
        self._size = 0
        self._ledger: Ledger | None = None
        self._closed = False
        self._lock_fd: int | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditUnavailable(
                f"the audit log directory {path.parent} cannot be created: {exc.strerror or exc}",
                hint="fix permissions or set gateway.audit_log / gateway.state_dir",
            ) from None
        self._lock_fd = lock_audit_dir(path)
        try:
            self._open()
        except BaseException:
            self._unlock()
            raise
        self._q: queue.Queue[_Item | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="bastion-audit", daemon=True)
        self._thread.start()

    # -- opening, rotation, recovery (writer thread after start-up) ---------------------------------
    def _unavailable(self, exc: BaseException) -> AuditUnavailable:
        if isinstance(exc, AuditUnavailable):
            return exc
        if isinstance(exc, LedgerError):
            what = exc.message
        elif isinstance(exc, OSError):
            what = f"{self.path}: {exc.strerror or exc}"
        else:
            what = f"{self.path}: {type(exc).__name__}"
        return AuditUnavailable(
            f"the audit log cannot be written: {what}",
            hint="free disk space or fix the audit log; the gateway refuses requests it cannot audit until then",
        )

    def _open(self) -> None:
        """Open the active segment (verifying only it), or start a new one chained to the last sealed one."""
        active = self.path
        sealed = sealed_segments(active)
        try:
            if active.exists() and active.stat().st_size > 0:
                self.segments_read = [active]
                ledger = Ledger(active, fsync="never")  # verifies this segment's chain
                header = segment_header(first_entry(active))
                if header is None:
                    if sealed:
                        ledger.close()
                        raise AuditUnavailable(
                            f"the active audit segment {active} has no segment header but sealed segments exist",
                            hint=f"check it with `bastion audit verify {active.parent}`; restore it from a backup",
                        )
                    index, before = 1, 0  # a log written before segments existed: it is segment 1
                else:
                    seg, prior = header.get("segment"), header.get("entries_before")
                    if type(seg) is not int or type(prior) is not int or seg < 2 or prior < 0:
                        ledger.close()
                        raise AuditUnavailable(
                            f"the active audit segment {active} starts with a malformed segment header",
                            hint=f"check the log with `bastion audit verify {active.parent}`",
                        )
                    index, before = seg, prior
                if sealed and sealed[-1][0] != index - 1:
                    ledger.close()
                    raise AuditUnavailable(
                        f"the active audit segment {active} is segment {index} but the last sealed one is "
                        f"{sealed[-1][0]}",
                        hint=f"check the log with `bastion audit verify {active.parent}`",
                    )
                self._ledger, self.segment, self._entries_before = ledger, index, before
                self._size = active.stat().st_size
                return
            previous: dict[str, Any] | None = None
            last = 0
            if sealed:
                last, last_path = sealed[-1]
                self.segments_read = [last_path]
                head = verify_ledger(last_path)
                header = segment_header(first_entry(last_path))
                before = header.get("entries_before", 0) if header else 0
                if type(before) is not int:
                    raise AuditUnavailable(
                        f"the audit segment {last_path} starts with a malformed segment header",
                        hint=f"check the log with `bastion audit verify {active.parent}`",
                    )
                self._entries_before = before + head.entries
                previous = {"entries": head.entries, "head": head.head}
            self._start_segment(last + 1, previous)
        except LedgerError as exc:
            raise AuditUnavailable(
                f"the audit log cannot be opened: {exc.message}",
                hint=f"if its last line is incomplete (a crash), run `bastion ledger repair {active}`; "
                "otherwise restore it from a backup",
            ) from None
        except OSError as exc:
            raise self._unavailable(exc) from None

    def _start_segment(self, index: int, previous: dict[str, Any] | None) -> None:
        ledger = Ledger(self.path, fsync="never")
        if index == 1:  # the first segment needs no header: nothing comes before it
            self._ledger, self.segment, self._size = ledger, 1, 0
            return
        try:
            ledger.append(
                SEGMENT_KIND, {"segment": index, "entries_before": self._entries_before, "previous": previous}
            )
            ledger.sync()
            _fsync_dir(self.path.parent)
        except BaseException:
            ledger.close()
            with contextlib.suppress(OSError):
                self.path.unlink()  # an empty or torn header: the next attempt starts the segment again
            raise
        self._ledger, self.segment = ledger, index
        self._size = self.path.stat().st_size

    def _rotate(self) -> None:
        assert self._ledger is not None
        head = self._ledger.head
        self._ledger.close()
        self._ledger = None
        target = sealed_path(self.path, self.segment)
        if target.exists():
            raise AuditUnavailable(f"cannot seal audit segment {self.segment}: {target} exists already")
        os.rename(self.path, target)
        _fsync_dir(self.path.parent)
        self._entries_before += head.entries
        self._start_segment(self.segment + 1, {"entries": head.entries, "head": head.head})

    def _rotation_due(self) -> bool:
        if self.segment_max_bytes is not None and self._size >= self.segment_max_bytes:
            return True
        if self.segment_max_entries is not None and self._ledger is not None:
            return self._ledger.head.entries >= self.segment_max_entries
        return False

    def _recover(self, start: int) -> None:
        """After a failed batch: cut the file back to where the batch began and resume the chain from it."""
        if self._ledger is not None:
            with contextlib.suppress(Exception):
                self._ledger.close()
            self._ledger = None
        with contextlib.suppress(OSError):
            if self.path.exists() and self.path.stat().st_size > start:
                os.truncate(self.path, start)
        with contextlib.suppress(Exception):
            self._open()

    # -- the writer thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            batch = [self._q.get()]
            while True:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            items = [item for item in batch if item is not None]
            if items:
                self._write_batch(items)
            for _ in batch:
                self._q.task_done()
            if len(items) != len(batch):
                return

    def _write_batch(self, items: list[_Item]) -> None:
        if self._ledger is None:
            try:
                self._open()
            except Exception as exc:
                self._fail(items, exc)
                return
        assert self._ledger is not None
        start = self._size
        written: list[tuple[Future[dict[str, Any]], dict[str, Any]]] = []
        try:
            for kind, data, fut in items:
                written.append((fut, self._ledger.append(kind, data)))
            self._ledger.sync()
            self._size = self.path.stat().st_size
        except Exception as exc:
            self._recover(start)
            self._fail(items, exc)
            return
        self.available = True
        for fut, entry in written:
            fut.set_result(entry)
        if self._rotation_due():
            try:
                self._rotate()
            except Exception as exc:  # the entries are durable; the next batch opens a segment again
                self._ledger = None
                log.error("audit segment rotation failed: %s", type(exc).__name__)

    def _fail(self, items: list[_Item], exc: BaseException) -> None:
        self.available = False
        error = self._unavailable(exc)
        for _, _, fut in items:
            self.failures += 1
            fut.set_exception(error)

    # -- API -------------------------------------------------------------------------------------------
    def _item(self, kind: str, data: dict[str, Any], outcome: str | None) -> _Item:
        if outcome is not None:
            if outcome not in OUTCOMES:
                raise ValueError(f"unknown audit outcome {outcome!r}; use one of {sorted(OUTCOMES)}")
            data = {**data, "outcome": outcome}
        try:
            canonical_json(data)  # a value the ledger cannot write is a bug here, not a full disk later
        except Exception as exc:
            raise LedgerError(f"audit entry is not representable as canonical JSON: {type(exc).__name__}") from None
        if self._closed:
            raise AuditUnavailable(f"the audit log {self.path} is closed (the gateway is shutting down)")
        return kind, data, Future()

    def submit(self, data: dict[str, Any], *, outcome: Outcome | None = None) -> Future[dict[str, Any]]:
        """Queue an entry (blocks while the queue is full); the future resolves once it is fsynced."""
        item = self._item(ENTRY_KIND, data, outcome)
        self._q.put(item)
        return item[2]

    async def _enqueue(self, item: _Item) -> None:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            await asyncio.to_thread(self._q.put, item)

    async def record(
        self, data: dict[str, Any], *, outcome: Outcome | None = None, wait: bool = True
    ) -> dict[str, Any] | None:
        """Append a decision; with ``wait`` (the default) return the entry once it is fsynced.

        Raises :class:`AuditUnavailable` when it could not be written (only with ``wait``; failures of
        entries not waited for are logged, without their content, and counted).
        """
        item = self._item(ENTRY_KIND, data, outcome)
        await self._enqueue(item)
        fut = item[2]
        if wait:
            return await asyncio.wrap_future(fut)
        fut.add_done_callback(_log_failure)
        return None

    async def ensure_available(self) -> None:
        """Return at once while the log works; after a failure, probe it (a durable health entry) or raise.

        Pass-through routes call this before forwarding, so a failing log refuses them before any byte
        leaves the gateway.
        """
        if self.available:
            return
        item = self._item(HEALTH_KIND, {"event": "audit_resumed", "failed_entries": self.failures}, None)
        await self._enqueue(item)
        await asyncio.wrap_future(item[2])

    def drain(self) -> None:
        """Block until every queued entry is written (tests, shutdown)."""
        self._q.join()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._q.put(None)
        self._thread.join(timeout=30)
        if self._ledger is not None:
            with contextlib.suppress(LedgerError):
                self._ledger.close()
        self._unlock()
