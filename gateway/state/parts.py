"""Held upload parts at rest: AES-256-GCM encrypted files under ``<state_dir>/parts``.

Raw parts are unscanned client data (they are scanned at ``/complete``), so they must never lie on
disk in clear, nor outlive their upload. Each part is one file::

    MAGIC (6) | key id (8) | nonce prefix (8) | chunk* ;  chunk = length (4, big endian) | ciphertext+tag

Chunks of at most 1 MiB are sealed with nonce = prefix || counter (4 bytes) and the header, the
counter and a final-chunk flag as associated data, so a reordered, cut or edited file fails to
decrypt. The key is per process (random, the default: parts die with the process) or configured
(32 bytes from the environment; needed when several processes share a state dir).

A part is written to ``<handle>.tmp`` while its writer holds an exclusive ``flock`` on it, then
renamed to ``<handle>.part``. At start-up :meth:`EncryptedPartStore.remove_stale` deletes unfinished
``.tmp`` files whose writer is gone and every part sealed under a key this process does not hold.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import os
import secrets
import struct
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import anyio.to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.gateway.state.errors import StateError
from bastion.gateway.state.models import PartBlob

MAGIC = b"BSTPT1"
CHUNK = 1024 * 1024
_HEADER = len(MAGIC) + 8 + 8
_LEN = struct.Struct(">I")
_HANDLE_CHARS = frozenset("0123456789abcdef")


def key_id(key: bytes) -> bytes:
    """8 bytes that identify a key without revealing it."""
    return hmac.new(key, b"bastion held-part key id", hashlib.sha256).digest()[:8]


def _nonce(prefix: bytes, counter: int) -> bytes:
    return prefix + counter.to_bytes(4, "big")


def _aad(header: bytes, counter: int, final: bool) -> bytes:
    return header + counter.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def part_header(kid: bytes, prefix: bytes) -> bytes:
    """The header a part's chunks are bound to: ``MAGIC | key id | nonce prefix``."""
    return MAGIC + kid + prefix


def seal_chunk(aead: AESGCM, header: bytes, counter: int, chunk: bytes | bytearray | memoryview, final: bool) -> bytes:
    """Chunk ``counter`` of the part with ``header``, sealed (ciphertext + tag); shared by every part store."""
    return aead.encrypt(_nonce(header[14:], counter), chunk, _aad(header, counter, final))


def open_chunk(aead: AESGCM, header: bytes, counter: int, sealed: bytes, final: bool) -> bytes | None:
    """The plaintext of a sealed chunk, or None when it was edited, moved, cut or sealed under another key."""
    try:
        return aead.decrypt(_nonce(header[14:], counter), sealed, _aad(header, counter, final))
    except InvalidTag:
        return None


async def iterate_in_thread(it: Iterator[bytes]) -> AsyncIterator[bytes]:
    """Drive a blocking chunk iterator (reads + decryption) from a worker thread, one chunk at a time."""
    done = object()
    while True:
        chunk = await anyio.to_thread.run_sync(next, it, done)
        if chunk is done:
            return
        assert isinstance(chunk, bytes)
        yield chunk


class ChunkedWriter:
    """What every held-part writer shares: written bytes are cut into ``CHUNK``-sized pieces for ``_seal``
    (whole chunks sealed straight from the caller's buffer; at most one chunk waits in ``_buf`` and is sealed
    only once more data follows: the last chunk is sealed as final by ``commit()``), with size and SHA-256."""

    _buf: bytearray
    _sha: Any
    size: int
    _done: bool

    def _seal(self, chunk: bytes | bytearray | memoryview, final: bool) -> None:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        if self._done:
            raise StateError("held part writer is already closed")
        self._sha.update(data)
        self.size += len(data)
        view = memoryview(data)
        if self._buf:
            need = CHUNK - len(self._buf)
            self._buf += view[:need]
            view = view[need:]
            if not view:
                return
            self._seal(self._buf, final=False)
            self._buf = bytearray()
        while len(view) > CHUNK:
            self._seal(view[:CHUNK], final=False)
            view = view[CHUNK:]
        self._buf += view


class PartWriter(ChunkedWriter):
    """Encrypts one part as it is written; :meth:`commit` makes it readable, :meth:`discard` removes it."""

    def __init__(self, store: EncryptedPartStore) -> None:
        self.handle = secrets.token_hex(16)
        self._store = store
        self._tmp = store.directory / f"{self.handle}.tmp"
        try:
            fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise store.io_error("create a held part in", exc) from None
        fcntl.flock(fd, fcntl.LOCK_EX)  # tells remove_stale() a live writer owns this file
        self._fh: BinaryIO = os.fdopen(fd, "wb")
        self._prefix = os.urandom(8)
        self._header = part_header(store.key_id, self._prefix)
        self._counter = 0
        self._buf = bytearray()
        self._sha = hashlib.sha256()
        self.size = 0
        self._done = False
        self._put(self._header)

    def _put(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:
            self.discard()
            raise self._store.io_error("write a held part to", exc) from None

    def _seal(self, chunk: bytes | bytearray | memoryview, final: bool) -> None:
        sealed = seal_chunk(self._store.aead, self._header, self._counter, chunk, final)
        self._counter += 1
        self._put(_LEN.pack(len(sealed)))
        self._put(sealed)

    def commit(self) -> PartBlob:
        """Seal the last chunk, close and publish the part; returns its handle, size and SHA-256."""
        if self._done:
            raise StateError("held part writer is already closed")
        self._seal(bytes(self._buf), final=True)
        self._buf = bytearray()
        try:
            self._fh.flush()
            os.replace(self._tmp, self._store.path(self.handle))
        except OSError as exc:
            self.discard()
            raise self._store.io_error("finish a held part in", exc) from None
        self._done = True
        self._fh.close()  # releases the flock
        return PartBlob(self.handle, self.size, self._sha.hexdigest())

    def discard(self) -> None:
        if self._done:
            return
        self._done = True
        with contextlib.suppress(OSError):
            self._fh.close()
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()

    def __enter__(self) -> PartWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.discard()  # no-op after commit()


class EncryptedPartStore:
    """Encrypted part files under ``directory``; ``key`` is 32 bytes, or None for a random per-process key."""

    def __init__(self, directory: Path, key: bytes | None = None) -> None:
        if key is not None and len(key) != 32:
            raise StateError(
                f"the held-part key must be 32 bytes, got {len(key)}",
                hint="generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
            )
        self.directory = directory
        self.ephemeral = key is None
        self._key = key if key is not None else AESGCM.generate_key(bit_length=256)
        self.aead = AESGCM(self._key)
        self.key_id = key_id(self._key)
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise self.io_error("create", exc) from None
        if not os.access(directory, os.W_OK | os.X_OK):
            raise StateError(
                f"held-part directory {directory} is not writable; fix permissions or set gateway.state_dir"
            )
        # An ephemeral key makes every part sealed by another process unreadable (and remove_stale()
        # deletes them), so it needs the directory to itself; processes with a configured key share it.
        try:
            self._lock_fd: int | None = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise self.io_error("lock", exc) from None
        try:
            fcntl.flock(self._lock_fd, (fcntl.LOCK_EX if self.ephemeral else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise StateError(
                f"another gateway process uses the held-part directory {directory}"
                + (" and this one has no configured part key" if self.ephemeral else " with a per-process key"),
                hint="give every process sharing a state dir the same key (gateway.part_key_env), "
                "or give each its own gateway.state_dir",
            ) from None

    def close(self) -> None:
        """Release the directory lock (parts stay; remove them through the state store)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def io_error(self, what: str, exc: OSError) -> StateError:
        reason = exc.strerror or type(exc).__name__
        full = exc.errno == errno.ENOSPC
        hint = "free disk space under the state dir" if full else "fix permissions or set gateway.state_dir"
        return StateError(f"cannot {what} the held-part directory {self.directory}: {reason}", hint=hint)

    def path(self, handle: str) -> Path:
        if len(handle) != 32 or not set(handle) <= _HANDLE_CHARS:
            raise StateError(f"not a held-part handle: {len(handle)} characters")
        return self.directory / f"{handle}.part"

    def writer(self) -> PartWriter:
        return PartWriter(self)

    def put(self, data: bytes) -> PartBlob:
        with self.writer() as w:
            w.write(data)
            return w.commit()

    def exists(self, handle: str) -> bool:
        return self.path(handle).exists()

    def readable(self, handle: str) -> bool:
        """The part exists and was sealed under this process's key."""
        try:
            with open(self.path(handle), "rb") as fh:
                header = fh.read(_HEADER)
        except OSError:
            return False
        return len(header) == _HEADER and header.startswith(MAGIC) and header[6:14] == self.key_id

    def read(self, handle: str) -> Iterator[bytes]:
        """The part's plaintext in chunks; a damaged or foreign part raises StateError."""
        p = self.path(handle)
        try:
            fh = open(p, "rb")  # noqa: SIM115 - closed in finally
        except OSError as exc:
            raise StateError(f"held part {handle} cannot be read: {exc.strerror or exc}") from None
        damaged = StateError(
            f"held part {handle} is damaged or was sealed under another key",
            hint="the upload must be started again (parts do not survive a restart without gateway.part_key_env)",
        )
        try:
            header = fh.read(_HEADER)
            if len(header) != _HEADER or not header.startswith(MAGIC) or header[6:14] != self.key_id:
                raise damaged
            counter = 0
            while True:
                raw_len = fh.read(4)
                if len(raw_len) != 4:
                    raise damaged  # the final chunk never came: truncated
                (n,) = _LEN.unpack(raw_len)
                sealed = fh.read(n)
                if len(sealed) != n:
                    raise damaged
                final = not fh.peek(1)
                plain = open_chunk(self.aead, header, counter, sealed, final)
                if plain is None:
                    raise damaged
                counter += 1
                if plain:
                    yield plain
                if final:
                    return
        finally:
            fh.close()

    def aiter(self, handle: str) -> AsyncIterator[bytes]:
        """:meth:`read` with the file reads and decryption off the event loop."""
        return iterate_in_thread(self.read(handle))

    def delete(self, handle: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(handle).unlink()

    def handles(self) -> set[str]:
        """Handles of all finished parts in the directory."""
        return {p.stem for p in self.directory.glob("*.part") if len(p.stem) == 32}

    def remove_unreferenced(self, referenced: set[str], grace_s: float) -> int:
        """Delete finished parts not in ``referenced`` written at least ``grace_s`` seconds ago; count removed.

        The grace keeps a part another live process wrote but has not attached to its upload yet.
        """
        removed = 0
        for handle in self.handles() - referenced:
            try:
                age = time.time() - self.path(handle).stat().st_mtime
            except FileNotFoundError:
                continue
            if age >= grace_s:
                self.delete(handle)
                removed += 1
        return removed

    def remove_stale(self) -> int:
        """Delete unfinished parts whose writer is gone and parts sealed under another key; count removed."""
        removed = 0
        for tmp in self.directory.glob("*.tmp"):
            try:
                fd = os.open(tmp, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue  # a live writer holds it
            else:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed += 1
            finally:
                os.close(fd)
        for handle in self.handles():
            if not self.readable(handle):
                self.delete(handle)
                removed += 1
        for other in self.directory.iterdir():
            if other.suffix not in (".part", ".tmp") and other.name != ".lock":
                with contextlib.suppress(OSError):
                    other.unlink()
                    removed += 1
        return removed
