"""Where a SQL store gets its database connections: one shared connection (SQLite) or a pool (PostgreSQL).

A store (the gateway's state store, the run registry) asks a :class:`Connections` source for a connection
around each transaction or read, so the same store logic serialises on one SQLite connection and runs
concurrently over a pool.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from bastion.sqlstore.dialect import Dialect


class Connections(Protocol):
    """A source of DB-API connections in autocommit mode (the store issues BEGIN/COMMIT itself)."""

    def connection(self) -> AbstractContextManager[Any]:
        """A connection for one transaction or read; given back when the block ends."""
        ...

    def close(self) -> None: ...


class SingleConnection:
    """One connection shared by every thread of a store, used by one thread at a time (SQLite)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lock = threading.RLock()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        with self._lock:
            yield self._conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()


# A pooled connection can die between the pool's check and its first statement (a server restart,
# pg_terminate_backend racing the check). A transaction whose BEGIN failed that way, or a read, did
# nothing: it is retried on another connection, this many times.
RECONNECT_RETRIES = 3


@contextlib.contextmanager
def transaction(db: Connections, dialect: Dialect) -> Iterator[Any]:
    """A write transaction on a connection of ``db``: the cursor; COMMIT on success, ROLLBACK on any error.

    Driver errors propagate unchanged (the caller turns them into StateError with ``dialect.describe``).
    """
    with contextlib.ExitStack() as stack:
        cur = _begin(db, dialect, stack)
        try:
            yield cur
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(*dialect.errors):
                cur.execute("ROLLBACK")
            raise


def _begin(db: Connections, dialect: Dialect, stack: contextlib.ExitStack) -> Any:
    for attempt in range(RECONNECT_RETRIES + 1):
        lease = contextlib.ExitStack()
        conn = lease.enter_context(db.connection())
        try:
            cur = conn.cursor()
            cur.execute(dialect.begin_write)
        except dialect.errors as exc:
            lease.close()  # the pool drops a broken connection
            if attempt < RECONNECT_RETRIES and dialect.lost_connection(exc, conn):
                continue
            raise
        stack.enter_context(lease)
        return cur
    raise AssertionError("unreachable")


def read_rows(
    db: Connections, dialect: Dialect, query: str, params: Sequence[Any] = (), *, binary: bool = False
) -> list[Any]:
    """All rows of one read-only ``query`` (``?`` placeholders); retried on a connection that was lost."""
    for attempt in range(RECONNECT_RETRIES + 1):
        with db.connection() as conn:
            try:
                cur = conn.cursor(**dialect.binary_cursor) if binary else conn.cursor()
                cur.execute(dialect.sql(query), tuple(params))
                return list(cur.fetchall())
            except dialect.errors as exc:
                if not (attempt < RECONNECT_RETRIES and dialect.lost_connection(exc, conn)):
                    raise
    raise AssertionError("unreachable")
