"""Where the state store gets its database connections: one shared connection (SQLite) or a pool (PostgreSQL).

:class:`SQLStateStore` asks a :class:`Connections` source for a connection around each transaction or
read, so the same store logic serialises on one SQLite connection and runs concurrently over a pool.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol


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
