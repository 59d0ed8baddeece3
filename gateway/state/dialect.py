"""The thin layer between the portable store logic (store.py) and one database engine.

Everything engine-specific is here: parameter style, column type names, how a write transaction
starts, row locks, and how a driver error becomes an operator-readable :class:`StateError`. The SQL
in store.py and schema.py is otherwise plain: ``INSERT ... ON CONFLICT (...) DO NOTHING`` and
``COALESCE`` work the same on SQLite (>= 3.24) and PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import ClassVar

from bastion.gateway.state.errors import StateError

FIX = "fix permissions or set gateway.state_dir"


class Dialect:
    """Defaults are standard SQL with ``?`` placeholders; subclasses override what differs."""

    name: ClassVar[str] = "sql"
    blob: ClassVar[str] = "BLOB"
    begin_write: ClassVar[str] = "BEGIN"
    for_update: ClassVar[str] = " FOR UPDATE"
    errors: ClassVar[tuple[type[Exception], ...]] = ()

    def sql(self, query: str) -> str:
        """``query`` (written with ``?`` placeholders) in the driver's parameter style."""
        return query

    def describe(self, exc: Exception, where: str) -> StateError:
        return StateError(f"state database {where} failed: {exc}", hint=FIX)


class SQLiteDialect(Dialect):
    name = "sqlite"
    blob = "BLOB"
    # IMMEDIATE takes the write lock at BEGIN: two processes racing for the same row serialise here
    # (busy_timeout makes the second wait) instead of failing at COMMIT.
    begin_write = "BEGIN IMMEDIATE"
    for_update = ""  # the whole database is locked by BEGIN IMMEDIATE already
    errors = (sqlite3.Error,)

    def describe(self, exc: Exception, where: str) -> StateError:
        msg = str(exc)
        low = msg.lower()
        if "not a database" in low or "malformed" in low:
            return StateError(
                f"state database {where} is not a usable SQLite database ({msg})",
                hint="move the file away (the gateway creates a new one) or set gateway.state_dir to another directory",
            )
        if "readonly" in low or "read-only" in low:
            return StateError(f"state database {where} is not writable: {msg}; {FIX}")
        if "unable to open" in low:
            return StateError(f"state database {where} cannot be opened: {msg}; {FIX}")
        if "full" in low:
            return StateError(
                f"state database {where} cannot be written: {msg}", hint="free disk space under the state dir"
            )
        if "locked" in low or "busy" in low:
            return StateError(
                f"state database {where} stayed locked by another process: {msg}",
                hint="another gateway process holds a long transaction on the same state dir; retry",
            )
        return StateError(f"state database {where} failed: {msg}", hint=FIX)


def sqlite_location(path: Path) -> str:
    return str(path)
