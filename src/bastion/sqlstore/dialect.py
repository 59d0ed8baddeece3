"""The thin layer between a store's portable SQL and one database engine.

Everything engine-specific is here: parameter style, column type names, how a write transaction
starts, row locks, and which driver errors there are. Stores subclass these to turn a driver error
into an operator-readable error of their own (:meth:`Dialect.describe`). The SQL is otherwise plain:
``INSERT ... ON CONFLICT (...) DO NOTHING`` and ``COALESCE`` work the same on SQLite (>= 3.24) and
PostgreSQL.
"""

from __future__ import annotations

import sqlite3
from typing import Any, ClassVar

from bastion.errors import BastionError


class Dialect:
    """Defaults are standard SQL with ``?`` placeholders; subclasses override what differs."""

    name: ClassVar[str] = "sql"
    blob: ClassVar[str] = "BLOB"
    begin_write: ClassVar[str] = "BEGIN"
    for_update: ClassVar[str] = " FOR UPDATE"
    migration_lock: ClassVar[str | None] = None  # run first in the migration transaction (serialises migrators)
    errors: ClassVar[tuple[type[Exception], ...]] = ()

    binary_cursor: ClassVar[dict[str, bool]] = {}  # cursor() arguments for results in binary (bulk bytes)

    def sql(self, query: str) -> str:
        """``query`` (written with ``?`` placeholders) in the driver's parameter style."""
        return query

    def sql_binary(self, query: str) -> str:
        """:meth:`sql` with the parameters sent in binary (bulk bytes: no escaping, half the size)."""
        return self.sql(query)

    def describe(self, exc: Exception, where: str) -> BastionError:
        """``exc`` (one of :attr:`errors`) as a one-line error for the operator; stores override the wording."""
        return BastionError(f"database {where} failed: {exc}")

    def lost_connection(self, exc: Exception, conn: Any) -> bool:
        """``exc`` means ``conn`` was dead before the statement ran (safe to retry elsewhere)."""
        return False


class SQLiteBase(Dialect):
    """SQLite's mechanics (Python's ``sqlite3``)."""

    name = "sqlite"
    blob = "BLOB"
    # IMMEDIATE takes the write lock at BEGIN: two processes racing for the same row serialise here
    # (busy_timeout makes the second wait) instead of failing at COMMIT.
    begin_write = "BEGIN IMMEDIATE"
    for_update = ""  # the whole database is locked by BEGIN IMMEDIATE already
    errors = (sqlite3.Error,)


__all__ = ["Dialect", "SQLiteBase"]
