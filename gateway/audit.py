"""The audit log: every gateway decision appended to a hash-chained ledger (fsync after each entry).

Entries are written by one dedicated thread, in order. Decisions that release training data upstream
(and every refusal) wait for their entry to be durable before the response goes out, so a crash can
never leave an upload forwarded but unaudited. Pass-through decisions on allowed routes are queued
and the request does not wait for the fsync.

What is recorded: time (the ledger's), a fingerprint of the client's credential (first 16 hex digits
of its SHA-256 — never the credential), route, upstream, upload digests, record counts, counts per
entity type and action, rule ids and the decision. Never a token, a provider key or personal data.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from bastion.provenance.ledger import Ledger

log = logging.getLogger("bastion.gateway.audit")

ENTRY_KIND = "gateway.decision"


def _log_failure(fut: Future[dict[str, Any]]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("audit log append failed: %s", type(exc).__name__)


def client_fingerprint(headers: Any) -> str:
    """``sha256:<16 hex>`` of the client's bearer token / api-key header, or ``anonymous``."""
    token = ""
    auth = headers.get("authorization") or ""
    if auth:
        scheme, _, rest = auth.partition(" ")
        token = rest.strip() if scheme.lower() in ("bearer", "basic") and rest else auth.strip()
    if not token:
        token = (headers.get("api-key") or headers.get("x-api-key") or "").strip()
    if not token:
        return "anonymous"
    return "sha256:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:16]


class AuditLog:
    """Append-only decision log over :class:`bastion.provenance.ledger.Ledger`, durable per entry.

    Group commit: the writer thread appends every entry waiting in the queue, then fsyncs once, and
    only then reports the entries as written. So no entry is ever acknowledged before it is on disk
    (the guarantee of ``fsync="always"``), while a burst of requests costs one fsync, not one each.
    The queue is bounded (``max_pending``): when the disk cannot keep up, requests wait for room
    instead of the backlog growing without limit.
    """

    def __init__(self, path: Path, *, max_pending: int = 10_000) -> None:
        self.ledger = Ledger(path, fsync="never")
        self.path = path
        self._q: queue.Queue[tuple[dict[str, Any], Future[dict[str, Any]]] | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="bastion-audit", daemon=True)
        self._thread.start()
        self.failures = 0

    def _run(self) -> None:
        while True:
            batch = [self._q.get()]
            while True:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            stop = any(item is None for item in batch)
            written: list[tuple[Future[dict[str, Any]], dict[str, Any]]] = []
            failed: list[tuple[Future[dict[str, Any]], BaseException]] = []
            for item in batch:
                if item is None:
                    continue
                data, fut = item
                try:
                    written.append((fut, self.ledger.append(ENTRY_KIND, data)))
                except Exception as exc:
                    failed.append((fut, exc))
            if written:
                try:
                    self.ledger.sync()
                except Exception as sync_error:
                    failed += [(fut, sync_error) for fut, _ in written]
                    written = []
            for fut, entry in written:
                fut.set_result(entry)
            for fut, error in failed:
                self.failures += 1
                fut.set_exception(error)
            for _ in batch:
                self._q.task_done()
            if stop:
                return

    def submit(self, data: dict[str, Any]) -> Future[dict[str, Any]]:
        """Queue an entry (blocks while the queue is full); the future resolves once it is fsynced."""
        fut: Future[dict[str, Any]] = Future()
        self._q.put((data, fut))
        return fut

    async def record(self, data: dict[str, Any], *, wait: bool = True) -> dict[str, Any] | None:
        """Queue an entry; with ``wait`` return once it is on disk (fsynced), else right away.

        A full queue makes the caller wait for room (off the event loop). Failures of entries not
        waited for are logged (without their content) and counted.
        """
        fut: Future[dict[str, Any]] = Future()
        try:
            self._q.put_nowait((data, fut))
        except queue.Full:
            fut = await asyncio.to_thread(self.submit, data)
        if wait:
            return await asyncio.wrap_future(fut)
        fut.add_done_callback(_log_failure)
        return None

    def drain(self) -> None:
        """Block until every queued entry is written (tests, shutdown)."""
        self._q.join()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=30)
        self.ledger.close()
