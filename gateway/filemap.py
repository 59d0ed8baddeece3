"""A small persistent map: upstream file id -> the scan decision that admitted it.

Filled from the upstream's answers to uploads this gateway scanned and forwarded; read when a
fine-tuning job references files, so only data that went through this gateway's scanner can be
trained on. SQLite (stdlib), one row per (upstream, file id), durable across restarts.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from bastion.provenance.ledger import utc_now

_SCHEMA = """
CREATE TABLE IF NOT EXISTS admitted_files_v2 (
    upstream TEXT NOT NULL,
    file_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    classification TEXT,
    input_sha256 TEXT NOT NULL,
    output_sha256 TEXT NOT NULL,
    records INTEGER NOT NULL,
    policy TEXT NOT NULL,
    admitted_at TEXT NOT NULL,
    client TEXT,
    purpose TEXT,
    PRIMARY KEY (upstream, file_id)
)
"""


@dataclass(frozen=True)
class AdmittedFile:
    upstream: str
    file_id: str
    decision: str
    classification: str | None
    input_sha256: str
    output_sha256: str
    records: int
    policy: str
    admitted_at: str
    client: str | None = None
    purpose: str | None = None


class FileMap:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    def put(
        self,
        upstream: str,
        file_id: str,
        *,
        decision: str,
        classification: str | None,
        input_sha256: str,
        output_sha256: str,
        records: int,
        policy: str,
        client: str | None = None,
        purpose: str | None = None,
    ) -> AdmittedFile:
        row = AdmittedFile(
            upstream,
            file_id,
            decision,
            classification,
            input_sha256,
            output_sha256,
            records,
            policy,
            utc_now(),
            client,
            purpose,
        )
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO admitted_files_v2 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.upstream,
                    row.file_id,
                    row.decision,
                    row.classification,
                    row.input_sha256,
                    row.output_sha256,
                    row.records,
                    row.policy,
                    row.admitted_at,
                    row.client,
                    row.purpose,
                ),
            )
        return row

    def get(self, upstream: str, file_id: str) -> AdmittedFile | None:
        with self._lock:
            cur = self._db.execute(
                "SELECT upstream, file_id, decision, classification, input_sha256, output_sha256, records, policy, "
                "admitted_at, client, purpose FROM admitted_files_v2 WHERE upstream = ? AND file_id = ?",
                (upstream, file_id),
            )
            row = cur.fetchone()
        return None if row is None else AdmittedFile(*row)

    def close(self) -> None:
        with self._lock:
            self._db.close()
