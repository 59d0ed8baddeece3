"""An S3 request body as the client framed it -> the object's bytes, with every integrity claim checked.

The wire forms (``x-amz-content-sha256``):

- a hex SHA-256: a plain body whose digest must match (checked when the body ended);
- ``UNSIGNED-PAYLOAD``: a plain body (TLS protects it);
- ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (botocore's default over HTTPS): ``Content-Encoding:
  aws-chunked``, chunks ``<hex size>\\r\\n<data>\\r\\n``, then ``0\\r\\n``, trailer lines (the checksum
  named by ``X-Amz-Trailer``) and an empty line;
- ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``: chunks ``<hex size>;chunk-signature=<sig>\\r\\n<data>\\r\\n``,
  each signature chained from the previous one (the first from the request's signature), ending with
  a signed empty chunk. Every signature is recomputed (botocore's key derivation) and must match.

Checksums the client claims (``Content-MD5``, ``x-amz-checksum-{crc32,sha1,sha256}`` as header or
trailer) and ``x-amz-decoded-content-length`` are verified against the decoded bytes. None of them is
forwarded: the gateway sends (possibly redacted) bytes of its own, with its own payload hash.
``x-amz-checksum-{crc32c,crc64nvme,...}`` cannot be computed without awscrt; they are dropped unverified
(``unverified`` lists them for the audit entry).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import zlib
from collections.abc import Mapping
from typing import Any

from bastion.adapters.aws.sigv4 import ClientSignature
from bastion.gateway.errors import Refusal

UNSIGNED = "UNSIGNED-PAYLOAD"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
SIGNED_CHUNKS = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
NOT_SUPPORTED = frozenset(
    {
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD",
        "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD-TRAILER",
    }
)
MAX_LINE = 4096
_HEX64 = re.compile(r"[0-9a-f]{64}")
_CHUNK_HEAD = re.compile(rb"([0-9a-fA-F]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?")
CHECKSUM_HEADERS = ("x-amz-checksum-crc32", "x-amz-checksum-sha1", "x-amz-checksum-sha256")


class _Crc32:
    def __init__(self) -> None:
        self.value = 0

    def update(self, data: bytes) -> None:
        self.value = zlib.crc32(data, self.value)

    def b64(self) -> str:
        return base64.b64encode(self.value.to_bytes(4, "big")).decode()


def _b64_of(h: Any) -> str:
    return base64.b64encode(h.digest()).decode()


def bad(code: str, message: str, status: int = 400, hint: str | None = None) -> Refusal:
    return Refusal(status, code, message, hint=hint or "send the object again as the AWS SDK frames it")


class ObjectBody:
    """Decode and check one S3 body. ``feed`` returns object bytes; ``finish`` checks the claims."""

    def __init__(self, headers: Mapping[str, str], signature: ClientSignature | None) -> None:
        payload = headers.get("x-amz-content-sha256", "")
        encodings = [e.strip().lower() for e in headers.get("content-encoding", "").split(",") if e.strip()]
        others = [e for e in encodings if e not in ("aws-chunked", "identity")]
        if others:
            raise bad(
                "InvalidEncoding",
                "the gateway scans plain JSONL objects; a Content-Encoding other than aws-chunked is not accepted",
                status=415,
                hint="upload the object uncompressed",
            )
        self.chunked = "aws-chunked" in encodings
        if payload in NOT_SUPPORTED:
            raise bad(
                "NotImplemented",
                f"the payload form {payload} is not supported by this gateway",
                status=501,
                hint="use the AWS SDK's default (STREAMING-UNSIGNED-PAYLOAD-TRAILER over HTTPS) or a signed payload",
            )
        streaming = payload in (UNSIGNED_TRAILER, SIGNED_CHUNKS)
        if not (streaming or payload == UNSIGNED or _HEX64.fullmatch(payload)):
            raise bad("InvalidArgument", "x-amz-content-sha256 must be a SHA-256 hex digest or a known payload form")
        if streaming != self.chunked:
            raise bad(
                "InvalidArgument",
                f"x-amz-content-sha256 {payload if streaming else '(a plain payload)'} does not match "
                "the Content-Encoding (aws-chunked bodies and streaming payload forms go together)",
            )
        if payload == SIGNED_CHUNKS and signature is None:  # pragma: no cover - callers verify first
            raise bad("AccessDenied", "a signed-chunk body needs a verified request signature", status=403)
        self.payload = payload
        self._signature = signature if payload == SIGNED_CHUNKS else None
        self._previous = signature.signature if signature is not None else ""
        declared = headers.get("x-amz-decoded-content-length")
        if self.chunked and (declared is None or not declared.isdigit()):
            raise bad("MissingContentLength", "an aws-chunked body needs x-amz-decoded-content-length")
        self.declared = int(declared) if declared is not None and declared.isdigit() else None
        self.trailer_name = headers.get("x-amz-trailer", "").strip().lower() or None
        if self.trailer_name is not None and not (
            payload == UNSIGNED_TRAILER and re.fullmatch(r"x-amz-checksum-[a-z0-9]{1,16}", self.trailer_name)
        ):
            raise bad(
                "InvalidArgument", "X-Amz-Trailer must name one x-amz-checksum-* trailer of an unsigned-trailer body"
            )
        # claims to verify: header name -> expected (base64) value
        self.claims: dict[str, str] = {}
        for name, value in headers.items():
            low = name.lower()
            if low.startswith("x-amz-checksum-") and low not in (
                "x-amz-checksum-algorithm",
                "x-amz-checksum-type",
                "x-amz-checksum-mode",
            ):
                self.claims[low] = value.strip()
        md5 = headers.get("content-md5")
        if md5 is not None:
            try:
                if len(base64.b64decode(md5, validate=True)) != 16:
                    raise ValueError
            except (ValueError, binascii.Error):
                raise bad("InvalidDigest", "the Content-MD5 you specified is not valid") from None
            self.claims["content-md5"] = md5.strip()
        self._hashes: dict[str, Any] = {}
        wanted = set(self.claims) | ({self.trailer_name} if self.trailer_name else set())
        for name in wanted:
            h = self._hasher(name)
            if h is not None:
                self._hashes[name] = h
        self.unverified = sorted(n for n in wanted if n not in self._hashes)
        self._sha256 = hashlib.sha256() if _HEX64.fullmatch(payload) else None
        # aws-chunked parser state
        self._buf = bytearray()
        self._left = 0  # data bytes left in the current chunk
        self._state = "head"  # head | data | crlf | trailer | done
        self._chunk_sha: Any = None
        self._chunk_sig = ""
        self.trailers: dict[str, str] = {}
        self.size = 0

    @staticmethod
    def _hasher(name: str) -> Any:
        if name == "content-md5":
            return hashlib.md5(usedforsecurity=False)
        if name == "x-amz-checksum-crc32":
            return _Crc32()
        if name == "x-amz-checksum-sha1":
            return hashlib.sha1(usedforsecurity=False)
        if name == "x-amz-checksum-sha256":
            return hashlib.sha256()
        return None

    # -- decoding -----------------------------------------------------------------------------------------
    def _emit(self, data: bytes, out: bytearray) -> None:
        if not data:
            return
        self.size += len(data)
        if self.declared is not None and self.size > self.declared:
            raise bad("IncompleteBody", "the body is longer than x-amz-decoded-content-length")
        for h in self._hashes.values():
            h.update(data)
        if self._sha256 is not None:
            self._sha256.update(data)
        if self._chunk_sha is not None:
            self._chunk_sha.update(data)
        out += data

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        if not self.chunked:
            self._emit(data, out)
            return bytes(out)
        buf = self._buf
        buf += data
        pos = 0
        while pos < len(buf):
            state = self._state
            if state == "data":
                take = min(self._left, len(buf) - pos)
                self._emit(bytes(buf[pos : pos + take]), out)
                self._left -= take
                pos += take
                if self._left == 0:
                    self._state = "crlf"
                continue
            if state == "done":
                raise bad("InvalidRequest", "the aws-chunked body has data after its final chunk")
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                if len(buf) - pos > MAX_LINE:
                    raise bad("InvalidRequest", "an aws-chunked line is too long")
                break
            line = bytes(buf[pos:nl])
            pos = nl + 2
            if state == "crlf":
                if line:
                    raise bad("InvalidRequest", "an aws-chunked chunk is longer than its declared size")
                self._end_chunk()
                self._state = "head"
            elif state == "head":
                self._head(line)
            elif state == "trailer":
                self._trailer(line)
        del buf[:pos]
        return bytes(out)

    def _head(self, line: bytes) -> None:
        m = _CHUNK_HEAD.fullmatch(line)
        if m is None:
            raise bad("InvalidRequest", "an aws-chunked chunk header is malformed")
        size = int(m[1], 16)
        sig = m[2].decode() if m[2] is not None else None
        if (self._signature is not None) != (sig is not None):
            raise bad(
                "InvalidRequest",
                "chunk signatures must be present exactly when the payload is STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            )
        self._chunk_sig = sig or ""
        self._chunk_sha = hashlib.sha256() if sig is not None else None
        if size == 0:  # the final chunk (signed: the signature of no data); then trailers, then an empty line
            self._end_chunk()
            self._state = "trailer"
            return
        self._left = size
        self._state = "data"

    def _end_chunk(self) -> None:
        if self._signature is None or self._chunk_sha is None:
            return
        expected = self._signature.chunk_signature(self._previous, self._chunk_sha.hexdigest())
        if not hmac.compare_digest(expected, self._chunk_sig):
            raise bad(
                "SignatureDoesNotMatch",
                "a chunk signature of the aws-chunked body does not match the one the gateway calculated",
                status=403,
            )
        self._previous = expected
        self._chunk_sha = None

    def _trailer(self, line: bytes) -> None:
        if not line:
            self._state = "done"
            return
        name, sep, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if not sep or name != self.trailer_name or name in self.trailers:
            raise bad("InvalidRequest", "the aws-chunked body has a trailer that X-Amz-Trailer did not announce")
        self.trailers[name] = value.strip()

    def finish(self) -> None:
        """The whole body arrived: every framing and integrity claim must hold."""
        if self.chunked and (self._state != "done" or self._buf):
            raise bad("IncompleteBody", "the aws-chunked body ended before its final chunk")
        if self.declared is not None and self.size != self.declared:
            raise bad("IncompleteBody", "the body is shorter than x-amz-decoded-content-length")
        if self._sha256 is not None and self._sha256.hexdigest() != self.payload:
            raise bad(
                "XAmzContentSHA256Mismatch",
                "the provided x-amz-content-sha256 header does not match what was computed",
            )
        claims = dict(self.claims)
        if self.trailer_name is not None:
            got = self.trailers.get(self.trailer_name)
            if got is None:
                raise bad("IncompleteBody", f"the trailer {self.trailer_name} announced by X-Amz-Trailer is missing")
            claims[self.trailer_name] = got
        for name, expected in claims.items():
            h = self._hashes.get(name)
            if h is None:
                continue
            actual = h.b64() if isinstance(h, _Crc32) else _b64_of(h)
            if actual != expected:
                raise bad(
                    "BadDigest",
                    f"the {name} you specified did not match the calculated checksum",
                )


__all__ = ["CHECKSUM_HEADERS", "SIGNED_CHUNKS", "UNSIGNED", "UNSIGNED_TRAILER", "ObjectBody", "bad"]
