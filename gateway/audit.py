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
    """Append-only decision log over :class:`bastion.provenance.ledger.Ledger` (fsync="always")."""

    def __init__(self, path: Path) -> None:
        self.ledger = Ledger(path, fsync="always")
        self.path = path
        self._q: queue.Queue[tuple[dict[str, Any], Future[dict[str, Any]]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="bastion-audit", daemon=True)
        self._thread.start()
        self.failures = 0

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                self._q.task_done()
                return
            data, fut = item
            try:
                entry = self.ledger.append(ENTRY_KIND, data)
            except Exception as exc:
                self.failures += 1
                fut.set_exception(exc)
            else:
                fut.set_result(entry)
            finally:
                self._q.task_done()

    def submit(self, data: dict[str, Any]) -> Future[dict[str, Any]]:
        fut: Future[dict[str, Any]] = Future()
        self._q.put((data, fut))
        return fut

    async def record(self, data: dict[str, Any]) -> dict[str, Any]:
        """Append and wait until the entry is on disk (fsynced)."""
        return await asyncio.wrap_future(self.submit(data))

    def record_later(self, data: dict[str, Any]) -> None:
        """Append without waiting; a failure is logged (without the entry's content) and counted."""
        fut = self.submit(data)

        def _done(f: Future[dict[str, Any]]) -> None:
            exc = f.exception()
            if exc is not None:
                log.error("audit log append failed: %s", type(exc).__name__)

        fut.add_done_callback(_done)

    def drain(self) -> None:
        """Block until every queued entry is written (tests, shutdown)."""
        self._q.join()

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=30)
        self.ledger.close()
