"""The default backend: one SQLite database (WAL, synchronous=FULL) in the gateway's state dir."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from bastion.gateway.state.dialect import FIX, SQLiteDialect
from bastion.gateway.state.errors import StateError
from bastion.gateway.state.parts import EncryptedPartStore
from bastion.gateway.state.store import DEFAULT_IDEMPOTENCY_TTL_S, DEFAULT_LEASE_S, SQLStateStore

DB_NAME = "state.sqlite3"
PARTS_DIR = "parts"
BUSY_TIMEOUT_S = 30.0


def prepare_state_dir(state_dir: Path) -> Path:
    """Create ``state_dir`` if needed and check it is a writable directory (one-line StateError if not)."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise StateError(f"state dir {state_dir} is not a directory; set gateway.state_dir to a directory") from None
    except OSError as exc:
        raise StateError(f"state dir {state_dir} cannot be created: {exc.strerror or exc}; {FIX}") from None
    if not state_dir.is_dir():
        raise StateError(f"state dir {state_dir} is not a directory; set gateway.state_dir to a directory")
    probe = state_dir / f".bastion-write-probe-{time.monotonic_ns()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StateError(f"state dir {state_dir} is not writable: {exc.strerror or exc}; {FIX}") from None
    return state_dir


def open_sqlite_store(
    state_dir: Path,
    *,
    part_key: bytes | None = None,
    lease_s: float = DEFAULT_LEASE_S,
    idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
    clock: Callable[[], float] = time.time,
    cleanup: bool = True,
    heartbeat: bool = True,
) -> SQLStateStore:
    """The state store in ``state_dir/state.sqlite3``, held parts in ``state_dir/parts``.

    Raises :class:`StateError` with a one-line, operator-readable message when the directory or the
    database cannot be used.
    """
    prepare_state_dir(state_dir)
    db = state_dir / DB_NAME
    if db.exists() and not db.is_file():
        raise StateError(f"state database {db} is not a regular file; move it away or set gateway.state_dir")
    dialect = SQLiteDialect()
    try:
        conn = sqlite3.connect(str(db), timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise dialect.describe(exc, str(db)) from None
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.Error as exc:
        conn.close()
        raise dialect.describe(exc, str(db)) from None
    parts: EncryptedPartStore | None = None
    try:
        parts = EncryptedPartStore(state_dir / PARTS_DIR, part_key)
        return SQLStateStore(
            conn,
            dialect,
            parts,
            where=str(db),
            lease_s=lease_s,
            idempotency_ttl_s=idempotency_ttl_s,
            clock=clock,
            cleanup=cleanup,
            heartbeat=heartbeat,
        )
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.close()
        if parts is not None:
            parts.close()
        raise
