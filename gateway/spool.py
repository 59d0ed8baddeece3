"""Spool files: the scanned (and possibly redacted) upload is written here, never held in memory.

A :class:`Spool` is a temp file that counts and hashes what is written to it. Only after the whole
upload was scanned and admitted is it read back (in blocks) and sent upstream, re-framed as a
multipart body whose ``Content-Length`` is computed exactly by :func:`multipart_body`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import anyio
import anyio.to_thread

from bastion.gateway.errors import Refusal

READ_BLOCK = 1024 * 1024


class Spool:
    """A write-once temp file with a running size and SHA-256; removed by :meth:`discard`."""

    def __init__(self, directory: Path | None = None, *, max_bytes: int | None = None, what: str = "upload") -> None:
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="bastion-spool-", suffix=".part", dir=directory)
        self.path = Path(name)
        self._fh = os.fdopen(fd, "wb")
        self._sha = hashlib.sha256()
        self.size = 0
        self.max_bytes = max_bytes
        self.what = what

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self.max_bytes is not None and self.size > self.max_bytes:
            raise Refusal(
                413,
                "upload_too_large",
                f"the {self.what} is larger than this gateway's limit of {self.max_bytes} bytes",
                hint="split the dataset into smaller files or ask the gateway operator to raise max_upload_bytes",
            )
        self._sha.update(data)
        self._fh.write(data)

    def close_write(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    async def aiter(self, block: int = READ_BLOCK) -> AsyncIterator[bytes]:
        """The spooled bytes in blocks; file reads run off the event loop."""
        self.close_write()
        fh = await anyio.to_thread.run_sync(open, self.path, "rb")
        try:
            while True:
                chunk: bytes = await anyio.to_thread.run_sync(fh.read, block)
                if not chunk:
                    return
                yield chunk
        finally:
            fh.close()

    def iter_sync(self, block: int = READ_BLOCK) -> list[tuple[int, int]]:
        """(offset, length) ranges of at most ``block`` bytes covering the file."""
        return [(off, min(block, self.size - off)) for off in range(0, self.size, block)]

    async def aiter_range(self, offset: int, length: int, block: int = READ_BLOCK) -> AsyncIterator[bytes]:
        self.close_write()
        fh = await anyio.to_thread.run_sync(open, self.path, "rb")
        try:
            fh.seek(offset)
            left = length
            while left > 0:
                chunk: bytes = await anyio.to_thread.run_sync(fh.read, min(block, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk
        finally:
            fh.close()

    def discard(self) -> None:
        self.close_write()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


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
