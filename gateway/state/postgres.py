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

import contextlib
import select
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from bastion.gateway.state.dbparts import DatabasePartStore
from bastion.gateway.state.dialect import Dialect
from bastion.gateway.state.errors import StateError
from bastion.gateway.state.schema import LATEST, migrate
from bastion.gateway.state.store import DEFAULT_IDEMPOTENCY_TTL_S, DEFAULT_LEASE_S, SQLStateStore

# pg_advisory_xact_lock key of schema migrations: the first 8 bytes of sha256("bastion gateway state schema")
MIGRATION_LOCK_KEY = 0x3B1F_6D2A_94C0_5E71
DEFAULT_POOL_SIZE = 10
DEFAULT_POOL_TIMEOUT_S = 10.0
DEFAULT_CONNECT_TIMEOUT_S = 10
RECONNECT_TIMEOUT_S = 10.0
TCP_USER_TIMEOUT_S = 30.0

KEY_NEEDED = (
    "a postgresql:// state store needs a configured held-part key: set gateway.part_key_env to the name of "
    "an environment variable holding 32 random bytes (64 hex digits), the same on every replica"
)
KEY_HINT = (
    "export BASTION_PART_KEY=$(python -c 'import secrets; print(secrets.token_hex(32))') on every replica "
    "and set part_key_env: BASTION_PART_KEY"
)


def safe_url(url: str) -> str:
    """``url`` without its password (and without query options), for messages and logs."""
    try:
        info = conninfo_to_dict(url)
    except Exception:  # an unparsable URL: say so without echoing it
        return "postgresql://<unparsable url>"
    user = f"{info['user']}@" if info.get("user") else ""
    host = str(info.get("host") or "localhost")
    port = f":{info['port']}" if info.get("port") else ""
    db = str(info.get("dbname") or "")
    return f"postgresql://{user}{host}{port}/{db}"


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split("\n")[:1]).strip()
    return text or type(exc).__name__


class PostgresDialect(Dialect):
    name = "postgresql"
    blob = "BYTEA"
    # READ COMMITTED; the rows two replicas race for are locked with FOR UPDATE or decided by ON CONFLICT
    begin_write = "BEGIN"
    for_update = " FOR UPDATE"
    migration_lock = f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
    errors = (psycopg.Error,)

    binary_cursor: ClassVar[dict[str, bool]] = {"binary": True}

    def sql(self, query: str) -> str:
        return query.replace("?", "%s")

    def sql_binary(self, query: str) -> str:
        return query.replace("?", "%b")

    def lost_connection(self, exc: Exception, conn: Any) -> bool:
        return isinstance(exc, psycopg.OperationalError) and bool(conn.closed or conn.broken)

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


def check_idle_connection(conn: Any) -> None:
    """Raise if a pooled connection is dead; costs a round trip only when the server said something.

    An idle connection's socket has nothing to read unless the server ended it (a restart,
    ``pg_terminate_backend``: an error message and EOF): then the pool's own check runs and fails, and
    the pool replaces the connection instead of a request failing on it.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()  # not select(): a busy gateway's descriptors go past FD_SETSIZE
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


class PoolConnections:
    """:class:`~bastion.gateway.state.db.Connections` from a psycopg pool (autocommit connections).

    Connections the server dropped are replaced when taken from the pool (:func:`check_idle_connection`).
    Held-part writers get their connections from a second pool of the same size, so slow uploads
    cannot starve the store's short transactions.
    """

    def __init__(self, url: str, *, size: int, timeout_s: float, connect_timeout_s: int, application_name: str) -> None:
        self.url = url
        self.kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": connect_timeout_s,
            "application_name": application_name,
            # a server that vanished without closing the connection (a lost host) is noticed in seconds
            "keepalives": 1,
            "keepalives_idle": 10,
            "keepalives_interval": 5,
            "keepalives_count": 3,
            "tcp_user_timeout": int(TCP_USER_TIMEOUT_S * 1000),
        }
        self.pool: ConnectionPool[Any] = self._pool("bastion-state", 1, size, timeout_s)
        self.writer_pool: ConnectionPool[Any] = self._pool("bastion-state-parts", 0, size, timeout_s)

    def _pool(self, name: str, min_size: int, size: int, timeout_s: float) -> ConnectionPool[Any]:
        pool: ConnectionPool[Any] = ConnectionPool(
            self.url,
            kwargs=self.kwargs,
            min_size=min_size,
            max_size=max(1, size),
            timeout=timeout_s,
            check=check_idle_connection,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
            name=name,
            open=False,
        )
        pool.open(wait=False)
        return pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self.pool.connection() as conn:
            yield conn

    def acquire(self) -> Any:
        """A connection for one held-part writer, until :meth:`release` (a rolled-back one if it failed)."""
        return self.writer_pool.getconn()

    def release(self, conn: Any) -> None:
        self.writer_pool.putconn(conn)

    def close(self) -> None:
        self.writer_pool.close()
        self.pool.close()


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
