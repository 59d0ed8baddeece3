"""Schema migrations of the state database, recorded in ``bastion_schema`` (one row per applied version).

A migration is a list of portable DDL statements; ``{blob}`` is the dialect's binary type. Times are
BIGINT milliseconds since the epoch (UTC), so comparisons are the same on every engine.
"""

from __future__ import annotations

from typing import Any

from bastion.gateway.state.dialect import Dialect
from bastion.gateway.state.errors import StateError
from bastion.sqlstore.migrations import apply_migrations
from bastion.sqlstore.migrations import schema_version as _schema_version

SCHEMA_TABLE = "bastion_schema"
MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "admitted, idempotency, held uploads and parts",
        [
            """CREATE TABLE admitted (
                upstream TEXT NOT NULL,
                ref TEXT NOT NULL,
                client TEXT NOT NULL,
                decision TEXT NOT NULL,
                classification TEXT,
                input_sha256 TEXT NOT NULL,
                output_sha256 TEXT NOT NULL,
                records BIGINT NOT NULL,
                policy TEXT NOT NULL,
                purpose TEXT,
                admitted_at BIGINT NOT NULL,
                PRIMARY KEY (upstream, ref)
            )""",
            """CREATE TABLE idempotency (
                scope TEXT NOT NULL,
                key_digest TEXT NOT NULL,
                request_digest TEXT NOT NULL,
                state TEXT NOT NULL,
                owner TEXT,
                lease_until BIGINT NOT NULL,
                status INTEGER,
                headers TEXT,
                body {blob},
                created_at BIGINT NOT NULL,
                PRIMARY KEY (scope, key_digest)
            )""",
            """CREATE TABLE held_uploads (
                upload_id TEXT PRIMARY KEY,
                upstream TEXT NOT NULL,
                client TEXT NOT NULL,
                purpose TEXT NOT NULL,
                filename TEXT NOT NULL,
                mime_type TEXT NOT NULL,
                bytes BIGINT NOT NULL,
                meta TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT NOT NULL,
                state TEXT NOT NULL,
                owner TEXT,
                lease_until BIGINT NOT NULL,
                result {blob},
                upstream_upload_id TEXT
            )""",
            """CREATE TABLE held_parts (
                upload_id TEXT NOT NULL,
                part_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                size BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                blob TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (upload_id, part_id)
            )""",
            "CREATE INDEX held_uploads_expiry ON held_uploads (expires_at)",
            "CREATE INDEX idempotency_created ON idempotency (created_at)",
        ],
    ),
    (
        2,
        "held-part bytes in the database (sealed chunks), for stores shared by several replicas",
        [
            # A part is visible once its part_blobs row exists; its writer inserts the chunks and that
            # row in one transaction, so a writer that dies leaves nothing behind.
            """CREATE TABLE part_blobs (
                handle TEXT PRIMARY KEY,
                key_id TEXT NOT NULL,
                header {blob} NOT NULL,
                chunks INTEGER NOT NULL,
                size BIGINT NOT NULL,
                sha256 TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            """CREATE TABLE part_chunks (
                handle TEXT NOT NULL,
                seq INTEGER NOT NULL,
                data {blob} NOT NULL,
                PRIMARY KEY (handle, seq)
            )""",
        ],
    ),
    (
        3,
        "ids the upstream issued through this gateway (a job's name), which a path may carry back; "
        "value is the id's sha256, never the id",
        [
            """CREATE TABLE issued (
                upstream TEXT NOT NULL,
                value TEXT NOT NULL,
                issued_at BIGINT NOT NULL,
                PRIMARY KEY (upstream, value)
            )""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]


def migrate(conn: Any, dialect: Dialect, where: str, now_ms: int) -> int:
    """Bring the schema to :data:`LATEST` (in one write transaction); returns the version found before.

    Safe to run from several processes at once (see :func:`bastion.sqlstore.migrations.apply_migrations`).
    """

    def too_new(current: int, latest: int) -> StateError:
        return StateError(
            f"state database {where} has schema version {current}, newer than this Bastion knows ({latest})",
            hint="run the newer Bastion that wrote it, or point gateway.state_dir at another directory",
        )

    return apply_migrations(conn, dialect, MIGRATIONS, table=SCHEMA_TABLE, now_ms=now_ms, too_new=too_new)


def schema_version(conn: Any) -> int:
    return _schema_version(conn, SCHEMA_TABLE)
