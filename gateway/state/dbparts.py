"""Held parts as sealed chunks in the state database, so every replica sharing it reads every part.

Same format as the part files of :mod:`~bastion.gateway.state.parts` (AES-256-GCM, 1 MiB chunks,
nonce = prefix || counter, header + counter + final flag as associated data), laid out as rows::

    part_blobs  (handle, key_id, header, chunks, size, sha256, created_at)   one row per finished part
    part_chunks (handle, seq, data)                                          data = ciphertext + tag

A writer inserts its chunks and, at :meth:`DatabasePartWriter.commit`, the ``part_blobs`` row in ONE
transaction on a connection it holds until then (from a pool of writer connections, not the store's:
a part arrives only as fast as the client sends it). A writer that dies (kill -9, a lost machine)
leaves nothing: the server rolls the transaction back when the connection drops. A reordered, cut,
moved or edited chunk fails to decrypt.

The key must be configured (never per process): every replica must read what another one wrote.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from types import TracebackType
from typing import Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.gateway.state.db import Connections, read_rows, transaction
from bastion.gateway.state.dialect import Dialect
from bastion.gateway.state.errors import StateError
from bastion.gateway.state.models import PartBlob
from bastion.gateway.state.parts import ChunkedWriter, iterate_in_thread, key_id, open_chunk, part_header, seal_chunk

_HANDLE_CHARS = frozenset("0123456789abcdef")


class WriterConnections(Protocol):
    """Connections a part writer holds from its first byte to its commit (autocommit mode)."""

    def acquire(self) -> Any: ...
    def release(self, conn: Any) -> None: ...


def _check_handle(handle: str) -> str:
    if len(handle) != 32 or not set(handle) <= _HANDLE_CHARS:
        raise StateError(f"not a held-part handle: {len(handle)} characters")
    return handle


class DatabasePartWriter(ChunkedWriter):
    """Encrypts one part into ``part_chunks`` rows as it is written, in one open transaction."""

    def __init__(self, store: DatabasePartStore) -> None:
        self.handle = secrets.token_hex(16)
        self._store = store
        self._header = part_header(store.key_id, os.urandom(8))
        self._counter = 0
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self.size = 0
        self._done = False
        self._conn: Any = None
        self._cur: Any = None
        try:
            self._conn = store.writers.acquire()
            self._cur = self._conn.cursor()
            self._cur.execute(store.dialect.begin_write)
        except store.dialect.errors as exc:
            self.discard()
            raise store.dialect.describe(exc, store.where) from None

    def _exec(self, query: str, params: Sequence[Any], *, binary: bool = False) -> None:
        dialect = self._store.dialect
        try:
            self._cur.execute(dialect.sql_binary(query) if binary else dialect.sql(query), tuple(params))
        except self._store.dialect.errors as exc:
            self.discard()
            raise self._store.dialect.describe(exc, self._store.where) from None

    def _seal(self, chunk: bytes | bytearray | memoryview, final: bool) -> None:
        sealed = seal_chunk(self._store.aead, self._header, self._counter, chunk, final)
        self._exec(
            "INSERT INTO part_chunks (handle, seq, data) VALUES (?, ?, ?)",
            (self.handle, self._counter, sealed),
            binary=True,
        )
        self._counter += 1

    def commit(self) -> PartBlob:
        """Seal the last chunk and publish the part (one COMMIT); returns its handle, size and SHA-256."""
        if self._done:
            raise StateError("held part writer is already closed")
        self._seal(bytes(self._buf), final=True)
        self._buf = bytearray()
        blob = PartBlob(self.handle, self.size, self._sha.hexdigest())
        self._exec(
            "INSERT INTO part_blobs (handle, key_id, header, chunks, size, sha256, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                self.handle,
                self._store.key_id.hex(),
                self._header,
                self._counter,
                blob.size,
                blob.sha256,
                int(time.time() * 1000),
            ),
        )
        self._exec("COMMIT", ())
        self._done = True
        self._close()
        return blob

    def discard(self) -> None:
        """Roll the part back (nothing of it stays in the database)."""
        if self._done:
            return
        self._done = True
        if self._cur is not None:
            with contextlib.suppress(*self._store.dialect.errors):
                self._cur.execute("ROLLBACK")
        self._close()

    def _close(self) -> None:
        if self._conn is not None:
            conn, self._conn, self._cur = self._conn, None, None
            self._store.writers.release(conn)

    def __enter__(self) -> DatabasePartWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.discard()  # no-op after commit()


class DatabasePartStore:
    """Encrypted held parts in the ``part_blobs`` / ``part_chunks`` tables of the shared state database.

    ``db`` serves reads and deletes (the store's pool); ``writers`` lends each writer its connection.
    ``key`` (32 bytes) is required: a per-process key cannot work across replicas.
    """

    ephemeral = False

    def __init__(
        self, db: Connections, writers: WriterConnections, dialect: Dialect, key: bytes, *, where: str
    ) -> None:
        if len(key) != 32:
            raise StateError(
                f"the held-part key must be 32 bytes, got {len(key)}",
                hint="generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
            )
        self.db = db
        self.writers = writers
        self.dialect = dialect
        self.where = where
        self.aead = AESGCM(key)
        self.key_id = key_id(key)

    def _rows(self, query: str, params: Sequence[Any] = (), *, binary: bool = False) -> list[Any]:
        try:
            return read_rows(self.db, self.dialect, query, params, binary=binary)
        except self.dialect.errors as exc:
            raise self.dialect.describe(exc, self.where) from None

    def check_key(self) -> None:
        """Refuse to run beside parts sealed under another key (replicas configured with different keys).

        Start-up clean-up would otherwise treat the other replicas' parts as lost and drop their uploads.
        """
        rows = self._rows("SELECT COUNT(*) FROM part_blobs WHERE key_id <> ?", (self.key_id.hex(),))
        if rows and int(rows[0][0]) > 0:
            raise StateError(
                f"state database {self.where} holds {int(rows[0][0])} held parts sealed under another key",
                hint="every gateway replica sharing the database must use the same key (gateway.part_key_env); "
                "to change the key, stop every replica and run `bastion gateway migrate --state URL "
                "--drop-held-uploads` (held uploads are lost)",
            )

    def close(self) -> None:
        """Nothing to release: the pool belongs to the state store."""

    def writer(self) -> DatabasePartWriter:
        return DatabasePartWriter(self)

    def put(self, data: bytes) -> PartBlob:
        with self.writer() as w:
            w.write(data)
            return w.commit()

    def _blob_row(self, handle: str) -> Any | None:
        rows = self._rows("SELECT key_id, header, chunks FROM part_blobs WHERE handle = ?", (_check_handle(handle),))
        return rows[0] if rows else None

    def exists(self, handle: str) -> bool:
        return self._blob_row(handle) is not None

    def readable(self, handle: str) -> bool:
        """The part exists and was sealed under this store's key."""
        row = self._blob_row(handle)
        return row is not None and row[0] == self.key_id.hex()

    def read(self, handle: str) -> Iterator[bytes]:
        """The part's plaintext chunk by chunk (one short query each); damage or a foreign key -> StateError."""
        row = self._blob_row(handle)
        if row is None:
            raise StateError(f"held part {handle} cannot be read: it is not in the state database")
        damaged = StateError(
            f"held part {handle} is damaged or was sealed under another key",
            hint="the upload must be started again; every replica must use the same gateway.part_key_env",
        )
        header, chunks = bytes(row[1]), int(row[2])
        if row[0] != self.key_id.hex() or chunks < 1 or bytes(header[6:14]) != self.key_id:
            raise damaged
        for counter in range(chunks):
            got = self._rows(
                "SELECT data FROM part_chunks WHERE handle = ? AND seq = ?", (handle, counter), binary=True
            )
            if not got:
                raise damaged
            plain = open_chunk(self.aead, header, counter, bytes(got[0][0]), counter == chunks - 1)
            if plain is None:
                raise damaged
            if plain:
                yield plain

    def aiter(self, handle: str) -> AsyncIterator[bytes]:
        """:meth:`read` with the queries and decryption off the event loop."""
        return iterate_in_thread(self.read(handle))

    def delete(self, handle: str) -> None:
        self.delete_many([handle])

    def delete_many(self, handles: Sequence[str]) -> None:
        if not handles:
            return
        try:
            with transaction(self.db, self.dialect) as cur:
                for handle in handles:
                    params = (_check_handle(handle),)
                    cur.execute(self.dialect.sql("DELETE FROM part_blobs WHERE handle = ?"), params)
                    cur.execute(self.dialect.sql("DELETE FROM part_chunks WHERE handle = ?"), params)
        except self.dialect.errors as exc:
            raise self.dialect.describe(exc, self.where) from None

    def handles(self) -> set[str]:
        return {str(r[0]) for r in self._rows("SELECT handle FROM part_blobs")}

    def remove_stale(self) -> int:
        """Nothing to do: an unfinished part never reaches the database (its transaction rolls back)."""
        return 0

    def remove_unreferenced(self, referenced: set[str], grace_s: float) -> int:
        """Delete finished parts not in ``referenced`` that are at least ``grace_s`` seconds old."""
        cutoff = int((time.time() - grace_s) * 1000)
        rows = self._rows("SELECT handle FROM part_blobs WHERE created_at <= ?", (cutoff,))
        orphans = sorted({str(r[0]) for r in rows} - referenced)
        self.delete_many(orphans)
        return len(orphans)
