"""PostgreSQL's mechanics for the SQL stores (psycopg 3 and psycopg-pool): dialect, URL display, a pool.

Needs the ``postgres`` extra; imported only when a store is given a ``postgresql://`` URL.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from typing import Any, ClassVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from bastion.sqlstore.dialect import Dialect

RECONNECT_TIMEOUT_S = 10.0
TCP_USER_TIMEOUT_S = 30.0


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


def first_line(exc: BaseException) -> str:
    """The first line of a driver error (psycopg adds context lines), or its type name."""
    text = " ".join(str(exc).split("\n")[:1]).strip()
    return text or type(exc).__name__


class PostgresBase(Dialect):
    """PostgreSQL's mechanics: ``%s`` placeholders, BYTEA, row locks, binary transfers."""

    name = "postgresql"
    blob = "BYTEA"
    # READ COMMITTED; the rows two writers race for are locked with FOR UPDATE or decided by ON CONFLICT
    begin_write = "BEGIN"
    for_update = " FOR UPDATE"
    errors = (psycopg.Error,)

    binary_cursor: ClassVar[dict[str, bool]] = {"binary": True}

    def sql(self, query: str) -> str:
        return query.replace("?", "%s")

    def sql_binary(self, query: str) -> str:
        return query.replace("?", "%b")

    def lost_connection(self, exc: Exception, conn: Any) -> bool:
        return isinstance(exc, psycopg.OperationalError) and bool(conn.closed or conn.broken)


def check_idle_connection(conn: Any) -> None:
    """Raise if a pooled connection is dead; costs a round trip only when the server said something.

    An idle connection's socket has nothing to read unless the server ended it (a restart,
    ``pg_terminate_backend``: an error message and EOF): then the pool's own check runs and fails, and
    the pool replaces the connection instead of a request failing on it.
    """
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()  # not select(): a busy server process's descriptors go past FD_SETSIZE
    poller.register(conn.fileno(), select.POLLIN)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


class PoolConnections:
    """:class:`~bastion.sqlstore.connections.Connections` from a psycopg pool (autocommit connections).

    Connections the server dropped are replaced when taken from the pool (:func:`check_idle_connection`).
    Long-running writers (the gateway's held parts) get their connections from a second pool of the
    same size (``writer_pool``, opened empty), so they cannot starve the store's short transactions.
    """

    def __init__(
        self,
        url: str,
        *,
        size: int,
        timeout_s: float,
        connect_timeout_s: int,
        application_name: str,
        pool_name: str = "bastion-state",
        writer_pool_name: str = "bastion-state-parts",
    ) -> None:
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
        self.pool: ConnectionPool[Any] = self._pool(pool_name, 1, size, timeout_s)
        self.writer_pool: ConnectionPool[Any] = self._pool(writer_pool_name, 0, size, timeout_s)

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
        """A connection for one long writer, until :meth:`release` (a rolled-back one if it failed)."""
        return self.writer_pool.getconn()

    def release(self, conn: Any) -> None:
        self.writer_pool.putconn(conn)

    def close(self) -> None:
        self.writer_pool.close()
        self.pool.close()


__all__ = [
    "PoolConnections",
    "PostgresBase",
    "check_idle_connection",
    "first_line",
    "safe_url",
]
