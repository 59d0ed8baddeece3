"""Schema migrations of a SQL store, recorded in a version table (one row per applied version).

A migration is ``(version, name, statements)``: portable DDL where ``{blob}`` is the dialect's binary
type. Each store keeps its own version table, so two stores may share one database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bastion.sqlstore.dialect import Dialect

Migration = tuple[int, str, Sequence[str]]


def apply_migrations(
    conn: Any,
    dialect: Dialect,
    migrations: Sequence[Migration],
    *,
    table: str,
    now_ms: int,
    too_new: Callable[[int, int], Exception],
    formats: Mapping[str, str] | None = None,
) -> int:
    """Bring the schema to the last of ``migrations`` in one write transaction; returns the version found before.

    Safe to run from several processes at once: the first takes the dialect's migration lock (SQLite:
    the write lock of BEGIN IMMEDIATE; PostgreSQL: a transaction-scoped advisory lock) and the others
    wait for it, then find the schema current and change nothing. A schema newer than the last
    migration raises ``too_new(found, latest)``. ``formats`` fills further ``{name}`` fields of the DDL
    (clauses only one engine has, such as SQLite's ``WITHOUT ROWID``).
    """
    latest = migrations[-1][0]
    cur = conn.cursor()
    cur.execute(dialect.begin_write)
    try:
        if dialect.migration_lock:
            cur.execute(dialect.migration_lock)
        cur.execute(
            f"CREATE TABLE IF NOT EXISTS {table} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
            "applied_at BIGINT NOT NULL)"
        )
        cur.execute(f"SELECT MAX(version) FROM {table}")
        row = cur.fetchone()
        current = int(row[0]) if row and row[0] is not None else 0
        if current > latest:
            raise too_new(current, latest)
        for version, name, statements in migrations:
            if version <= current:
                continue
            for stmt in statements:
                cur.execute(stmt.format(blob=dialect.blob, **(formats or {})))
            cur.execute(
                dialect.sql(f"INSERT INTO {table} (version, name, applied_at) VALUES (?, ?, ?)"),
                (version, name, now_ms),
            )
        cur.execute("COMMIT")
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    return current


def schema_version(conn: Any, table: str) -> int:
    cur = conn.cursor()
    cur.execute(f"SELECT MAX(version) FROM {table}")
    row = cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


__all__ = ["Migration", "apply_migrations", "schema_version"]
