"""Operator commands on a state store that no gateway needs to be running for: migrate, drop held uploads."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

from bastion.extras import require
from bastion.gateway.state.dialect import Dialect, SQLiteDialect
from bastion.gateway.state.location import describe_location, is_postgres_url, sqlite_dir

_COUNT_HELD = ("SELECT COUNT(*) FROM held_uploads", "SELECT COUNT(*) FROM part_blobs")
_DROP_HELD = (
    "DELETE FROM held_parts",
    "DELETE FROM held_uploads",
    "DELETE FROM part_chunks",
    "DELETE FROM part_blobs",
)


def migrate_state(location: Path | str) -> tuple[int, int]:
    """Bring the schema at ``location`` to the latest version; returns (version before, version after)."""
    if is_postgres_url(location):
        require("postgres", feature="bastion gateway migrate")
        from bastion.gateway.state.postgres import migrate_postgres

        return migrate_postgres(str(location))
    from bastion.gateway.state.sqlite import migrate_sqlite

    return migrate_sqlite(sqlite_dir(location))


def _drop(conn: Any, dialect: Dialect) -> tuple[int, int]:
    cur = conn.cursor()
    cur.execute(dialect.begin_write)
    try:
        uploads, parts = (int(cur.execute(q).fetchone()[0]) for q in _COUNT_HELD)
        for q in _DROP_HELD:
            cur.execute(q)
        cur.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(*dialect.errors):
            cur.execute("ROLLBACK")
        raise
    return uploads, parts


def drop_held_uploads(location: Path | str) -> tuple[int, int]:
    """Delete every held upload and held part (schema migrated first); returns (uploads, parts) removed.

    For a key change: parts sealed under the old key cannot be read under the new one. Stop every
    gateway using the store first (a SQLite state dir refuses while a gateway holds it).
    """
    migrate_state(location)
    where = describe_location(location)
    if is_postgres_url(location):
        import psycopg

        from bastion.gateway.state.postgres import PostgresDialect

        pg = PostgresDialect()
        try:
            with psycopg.connect(str(location), autocommit=True, connect_timeout=10) as conn:
                return _drop(conn, pg)
        except psycopg.Error as exc:
            raise pg.describe(exc, where) from None
    from bastion.gateway.state.parts import EncryptedPartStore
    from bastion.gateway.state.sqlite import BUSY_TIMEOUT_S, DB_NAME, PARTS_DIR

    state_dir = sqlite_dir(location)
    # a per-process key takes the parts directory exclusively (refused while a gateway uses it), and
    # every part on disk is unreadable under it, so remove_stale() removes them all
    files = EncryptedPartStore(state_dir / PARTS_DIR)
    lite = SQLiteDialect()
    try:
        db = sqlite3.connect(str(state_dir / DB_NAME), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            uploads, _ = _drop(db, lite)
        finally:
            db.close()
        parts = files.remove_stale()
    except sqlite3.Error as exc:
        raise lite.describe(exc, str(state_dir / DB_NAME)) from None
    finally:
        files.close()
    return uploads, parts


__all__ = ["drop_held_uploads", "migrate_state"]
