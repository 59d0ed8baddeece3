"""Spool files: the scanned (and possibly redacted) upload is written here, never held in memory.

A :class:`Spool` is a temp file that counts and hashes what is written to it. Only after the whole
upload was scanned and admitted is it read back (in blocks) and sent upstream, re-framed as a
multipart body whose ``Content-Length`` is computed exactly by :func:`multipart_body`.

What reaches the disk is sealed: the bytes are cut into blocks of :data:`SPOOL_BLOCK`, each encrypted with
AES-256-GCM under a key that exists only in this process's memory, with the block's number as its nonce.
So a spool left behind by a crash (``kill -9``, power loss) holds no readable training data, and a spool
edited, cut or re-ordered on disk between the scan and the upload (to send bytes the scan never saw) fails
to read back: the upload is refused, never sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.gateway.errors import Refusal
from bastion.gateway.state.parts import iterate_in_thread

READ_BLOCK = 1024 * 1024
SPOOL_BLOCK = 1024 * 1024
"""Plaintext bytes per sealed block of a spool file (each is followed by its 16-byte GCM tag)."""
_TAG = 16


class Spool:
    """A write-once, sealed temp file with a running size and SHA-256 of its plaintext; removed by
    :meth:`discard`. Read it back with :meth:`aiter`, :meth:`aiter_range` or :meth:`blocks`."""

    def __init__(self, directory: Path | None = None, *, max_bytes: int | None = None, what: str = "upload") -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="bastion-spool-", suffix=".part", dir=directory)
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb")
        self._sha = hashlib.sha256()
        self._aead = AESGCM(AESGCM.generate_key(bit_length=256))
        self._pending = bytearray()  # plaintext of the block being filled
        self._sealed = 0  # blocks written
        self.size = 0
        self.max_bytes = max_bytes
        self.what = what

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._fh.closed:
            raise ValueError("the spool was closed for writing")
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise Refusal(
                413,
                "upload_too_large",
                f"the {self.what} is larger than this gateway's limit of {self.max_bytes} bytes",
                hint="split the dataset into smaller files or ask the gateway operator to raise max_upload_bytes",
            )
        self._sha.update(data)
        self._pending += data
        while len(self._pending) >= SPOOL_BLOCK:
            self._seal(bytes(self._pending[:SPOOL_BLOCK]))
            del self._pending[:SPOOL_BLOCK]

    def _seal(self, plain: bytes) -> None:
        self._fh.write(self._aead.encrypt(self._sealed.to_bytes(12, "big"), plain, None))
        self._sealed += 1

    def close_write(self) -> None:
        if not self._fh.closed:
            if self._pending:
                self._seal(bytes(self._pending))
                self._pending.clear()
            self._fh.flush()
            self._fh.close()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def blocks(self, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The plaintext of ``length`` bytes from ``offset`` (default: to the end), block by block; a
        spool damaged on disk raises a 500 refusal before any byte of the damaged block is given out."""
        self.close_write()
        end = self.size if length is None else min(self.size, offset + length)
        if offset >= end:
            return
        with open(self.path, "rb") as fh:
            for index in range(offset // SPOOL_BLOCK, (end - 1) // SPOOL_BLOCK + 1):
                plain = self._open_block(fh, index)
                lo = max(offset - index * SPOOL_BLOCK, 0)
                hi = min(end - index * SPOOL_BLOCK, len(plain))
                yield plain[lo:hi]

    def _open_block(self, fh: BinaryIO, index: int) -> bytes:
        want = min(SPOOL_BLOCK, self.size - index * SPOOL_BLOCK)
        fh.seek(index * (SPOOL_BLOCK + _TAG))
        sealed = fh.read(want + _TAG)
        try:
            if len(sealed) != want + _TAG:
                raise InvalidTag
            return self._aead.decrypt(index.to_bytes(12, "big"), sealed, None)
        except InvalidTag:
            raise Refusal(
                500,
                "internal_error",
                f"the gateway's spool of the scanned {self.what} was changed on disk after the scan; nothing was sent",
                hint="retry the upload; if it happens again, ask the gateway operator to check the spool directory",
            ) from None

    def reader(self) -> io.BufferedReader:
        """A seekable binary file of the plaintext, for readers that need random access (pyarrow)."""
        self.close_write()
        return io.BufferedReader(_SpoolReader(self), buffer_size=64 * 1024)

    def read_all(self) -> bytes:
        """The whole plaintext (for small spools only: it is held in memory)."""
        return b"".join(self.blocks())

    async def aiter(self, block: int = READ_BLOCK) -> AsyncIterator[bytes]:
        """The spooled bytes in blocks; file reads and decryption run off the event loop."""
        async for chunk in self.aiter_range(0, self.size, block):
            yield chunk

    def iter_sync(self, block: int = READ_BLOCK) -> list[tuple[int, int]]:
        """(offset, length) ranges of at most ``block`` bytes covering the file."""
        return [(off, min(block, self.size - off)) for off in range(0, self.size, block)]

    async def aiter_range(self, offset: int, length: int, block: int = READ_BLOCK) -> AsyncIterator[bytes]:
        """``length`` plaintext bytes from ``offset``, in pieces of at most ``block`` bytes."""
        async for plain in iterate_in_thread(self.blocks(offset, length)):
            for k in range(0, len(plain), block):
                yield plain[k : k + block]

    def discard(self) -> None:
        self.close_write()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _SpoolReader(io.RawIOBase):
    """Random access to a sealed spool's plaintext: each read opens (and checks) the block it falls in."""

    def __init__(self, spool: Spool) -> None:
        super().__init__()
        self._spool = spool
        self._fh = open(spool.path, "rb")  # noqa: SIM115 -- closed by close()
        self._pos = 0
        self._block: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._spool.size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._spool.size or not len(view):
            return 0
        index = self._pos // SPOOL_BLOCK
        if self._block is None or self._block[0] != index:
            self._block = (index, self._spool._open_block(self._fh, index))
        plain = self._block[1]
        lo = self._pos - index * SPOOL_BLOCK
        n = min(len(view), len(plain) - lo)
        view[:n] = plain[lo : lo + n]
        self._pos += n
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _quote(value: str) -> str:
    # RFC 7578: names/filenames in quoted-string; escape quotes and strip line breaks (header injection).
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """A multipart/form-data body of text fields plus one file streamed from a spool (or a byte range of it)."""

    def __init__(
        self,
        fields: Sequence[tuple[str, str]],
        file_field: str,
        filename: str,
        file_content_type: str,
        spool: Spool,
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> None:
        self.boundary = "bastion-" + secrets.token_hex(16)
        self.spool = spool
        self.offset = offset
        self.length = spool.size - offset if length is None else length
        b = self.boundary
        head = bytearray()
        for name, value in fields:
            head += f'--{b}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
            head += value.encode("utf-8") + b"\r\n"
        head += (
            f'--{b}\r\nContent-Disposition: form-data; name="{_quote(file_field)}"; filename="{_quote(filename)}"\r\n'
            f"Content-Type: {file_content_type}\r\n\r\n"
        ).encode()
        self.head = bytes(head)
        self.tail = f"\r\n--{b}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int:
        return len(self.head) + self.length + len(self.tail)

    async def aiter(self) -> AsyncIterator[bytes]:
        yield self.head
        async for chunk in self.spool.aiter_range(self.offset, self.length):
            yield chunk
        yield self.tail
