"""The replica backend: one PostgreSQL database shared by every gateway process and machine.

Selected by ``gateway.state_url: postgresql://USER@HOST:PORT/DB`` (a password goes in ``PGPASSWORD``
or ``~/.pgpass``, never in the config). The store logic and SQL are those of the SQLite backend
(store.py, schema.py); this module adds the dialect, a psycopg connection pool and held parts kept
as sealed chunks in the database (dbparts.py), so a part written through one replica is read
through another.

Races between replicas are settled by the database: ``INSERT ... ON CONFLICT DO NOTHING`` decides
which of two admissions / idempotency keys wins, ``SELECT ... FOR UPDATE`` serialises the claims of
one upload's ``/complete``, and migrations run under a transaction-scoped advisory lock.

When PostgreSQL cannot be reached, every call fails with a one-line :class:`StateError` (answer 503)
after ``pool_timeout_s``; the pool reconnects by itself once the server is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
from psycopg_pool import PoolTimeout

from bastion.gateway.state.dbparts import DatabasePartStore
from bastion.gateway.state.dialect import Dialect
from bastion.gateway.state.errors import StateError
from bastion.gateway.state.schema import LATEST, migrate
from bastion.gateway.state.store import DEFAULT_IDEMPOTENCY_TTL_S, DEFAULT_LEASE_S, SQLStateStore
from bastion.sqlstore.postgres import (
    PoolConnections,
    PostgresBase,
    check_idle_connection,
    safe_url,
)
from bastion.sqlstore.postgres import first_line as _first_line

# pg_advisory_xact_lock key of schema migrations: the first 8 bytes of sha256("bastion gateway state schema")
MIGRATION_LOCK_KEY = 0x3B1F_6D2A_94C0_5E71
DEFAULT_POOL_SIZE = 10
DEFAULT_POOL_TIMEOUT_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 10

KEY_NEEDED = (
    "a postgresql:// state store needs a configured held-part key: set gateway.part_key_env to the name of "
    "an environment variable holding 32 random bytes (64 hex digits), the same on every replica"
)
KEY_HINT = (
    "export BASTION_PART_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))') on every replica "
    "and set part_key_env: BASTION_PART_KEY"
)


class PostgresDialect(PostgresBase, Dialect):
    migration_lock = f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"

    def describe(self, exc: Exception, where: str) -> StateError:
        if isinstance(exc, PoolTimeout):
            return StateError(
                f"state database {where} is unavailable: no connection within the pool timeout "
                "(the server is down or unreachable, or every pooled connection is busy)",
                hint="check that PostgreSQL is running and reachable; the gateway reconnects by itself once it is",
            )
        if isinstance(exc, psycopg.OperationalError):
            return StateError(
                f"state database {where} is unavailable: {_first_line(exc)}",
                hint="check that PostgreSQL is running and gateway.state_url is right; "
                "the gateway reconnects by itself once it is back",
            )
        sqlstate = getattr(exc, "sqlstate", None)
        code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
        return StateError(
            f"state database {where} failed{code}: {_first_line(exc)}",
            hint="check the PostgreSQL server log; the gateway's user needs CREATE on the database's schema",
        )


def open_postgres_store(
    url: str,
    *,
    part_key: bytes | None,
    lease_s: float = DEFAULT_LEASE_S,
    idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
    clock: Callable[[], float] = time.time,
    cleanup: bool = True,
    heartbeat: bool = True,
    pool_size: int = DEFAULT_POOL_SIZE,
    pool_timeout_s: float = DEFAULT_POOL_TIMEOUT_S,
    connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
) -> SQLStateStore:
    """The state store in the PostgreSQL database at ``url`` (schema migrated on the way in).

    Raises :class:`StateError` (one line + hint) when no key is configured, the server cannot be
    reached, or the schema is newer than this Bastion.
    """
    if part_key is None:
        raise StateError(KEY_NEEDED, hint=KEY_HINT)
    where = safe_url(url)
    dialect = PostgresDialect()
    # One direct connection first: an unreachable server or a wrong database/user gets its real reason.
    try:
        psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout_s).close()
    except psycopg.Error as exc:
        raise dialect.describe(exc, where) from None
    except Exception as exc:  # e.g. an invalid URL (psycopg.ProgrammingError is a psycopg.Error)
        raise StateError(f"gateway.state_url is not a usable PostgreSQL URL ({type(exc).__name__})") from None
    db = PoolConnections(
        url,
        size=pool_size,
        timeout_s=pool_timeout_s,
        connect_timeout_s=connect_timeout_s,
        application_name="bastion-gateway",
    )
    try:
        parts = DatabasePartStore(db, db, dialect, part_key, where=where)
        store = SQLStateStore(
            db,
            dialect,
            parts,
            where=where,
            lease_s=lease_s,
            idempotency_ttl_s=idempotency_ttl_s,
            clock=clock,
            cleanup=False,
            heartbeat=heartbeat,
        )
    except BaseException:
        db.close()
        raise
    try:
        parts.check_key()
        if cleanup:
            store.cleanup()
    except BaseException:
        store.close()
        raise
    return store


def migrate_postgres(url: str, *, connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S) -> tuple[int, int]:
    """Bring the schema at ``url`` to the latest version; returns (version before, version after).

    Needs no key and opens no pool: what ``bastion gateway migrate --state URL`` runs before a rollout.
    """
    where = safe_url(url)
    dialect = PostgresDialect()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=connect_timeout_s) as conn:
            before = migrate(conn, dialect, where, int(time.time() * 1000))
    except psycopg.Error as exc:
        raise dialect.describe(exc, where) from None
    return before, LATEST


__all__ = [
    "PoolConnections",
    "PostgresDialect",
    "check_idle_connection",
    "migrate_postgres",
    "open_postgres_store",
    "safe_url",
]
