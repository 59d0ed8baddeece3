"""Cloud Storage uploads through the gateway: scanned, redacted or refused, then written by the gateway.

Client side (what ``google-cloud-storage`` sends, only its ``api_endpoint`` pointed at the gateway):

- ``POST /upload/storage/v1/b/{bucket}/o?uploadType=media&name=...``: the body is the object;
- ``uploadType=multipart``: ``multipart/related`` with a JSON metadata part and the media part;
- ``uploadType=resumable``: the JSON metadata opens a session *on the gateway*; the ``Location`` the
  client gets is a gateway URL (``...?uploadType=resumable&upload_id=<gateway id>``) and every chunk
  ``PUT`` (``Content-Range``) comes back here. Chunks are held encrypted in the state store (any replica
  can take the next one) and scanned as they arrive by the process that holds the session's scanner
  (:class:`LiveScans`): a record the policy blocks ends the session at that chunk, long before the
  last one. The scanner's (redacted) output waits in a spool file of that process for the last chunk;
  when another replica (or a restarted process) gets the last chunk, it scans the held chunks in order
  instead. The upload id (128 random bits) is the session's capability, as Cloud Storage's own is;
- XML API ``PUT /{bucket}/{object}`` (one path segment object names).

Nothing reaches Cloud Storage before the whole object was scanned and admitted. Then the gateway owns
the upstream write: it opens its own resumable session (metadata it wrote, with the *rewritten* size),
sends the (redacted) bytes in 8 MiB chunks and sends ``x-goog-hash: crc32c=`` computed over what it
sends. The client's ``x-goog-hash``/``Content-MD5``/metadata ``md5Hash``/``crc32c`` describe the bytes it
sent: they are checked against those bytes and dropped (after redaction they would be wrong). The
upstream session URI never leaves the gateway; a failed chunk cancels it (no object is created).
Every written object generation is recorded in the ledger (:mod:`bastion.adapters.gcs.ledger`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.responses import Response

from bastion.adapters.gcs import ledger
from bastion.adapters.gcs.auth import prime
from bastion.adapters.openai import steps
from bastion.gateway import jsonbody, minted
from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import read_limited
from bastion.gateway.scan import ScanSink, decision_refusal, summary_facts
from bastion.gateway.spool import Spool
from bastion.gateway.state import HeldPart, HeldUpload, StateConflict

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

UPSTREAM_CHUNK = 32 * 256 * 1024  # 8 MiB, a multiple of the 256 KiB Cloud Storage requires
MAX_RESPONSE = 4 * 1024 * 1024
MAX_METADATA = 64 * 1024
SESSION_TTL = timedelta(days=7)  # Cloud Storage's resumable sessions live a week
OBJECT_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/=+-]{0,1023}")
CONTENT_TYPES = frozenset(
    {
        "application/jsonl",
        "application/json",
        "application/x-ndjson",
        "application/jsonlines",
        "application/octet-stream",
        "text/jsonl",
        "text/plain",
    }
)
#: object resource fields a client may set; md5Hash/crc32c are checked against what the client sent, then dropped
META_FIELDS = frozenset(
    {"name", "contentType", "metadata", "cacheControl", "contentDisposition", "contentLanguage", "storageClass"}
)
CHECKSUM_FIELDS = frozenset({"md5Hash", "crc32c"})
#: upload query parameters passed on to the gateway's own upstream session (values matched by the spec)
PASSED_QUERY = (
    "ifGenerationMatch",
    "ifGenerationNotMatch",
    "ifMetagenerationMatch",
    "ifMetagenerationNotMatch",
    "predefinedAcl",
    "kmsKeyName",
    "userProject",
)
_CONTENT_RANGE = re.compile(r"bytes (?:(?P<first>[0-9]{1,15})-(?P<last>[0-9]{1,15})|\*)/(?P<total>[0-9]{1,15}|\*)")
_UPLOAD_ID = re.compile(minted.shape("bst", 32))


def _invalid(message: str, param: str | None = None) -> Refusal:
    return Refusal(400, "invalid_upload", message, param=param, hint="send the object as google-cloud-storage does")


# -- checksums ---------------------------------------------------------------------------------------
class Checksums:
    """crc32c and MD5 of a byte stream, in Cloud Storage's base64 form."""

    def __init__(self) -> None:
        import google_crc32c

        self._crc: Any = google_crc32c.Checksum()  # type: ignore[no-untyped-call]
        self._md5 = hashlib.md5(usedforsecurity=False)

    def update(self, data: bytes) -> None:
        self._crc.update(data)
        self._md5.update(data)

    @property
    def crc32c(self) -> str:
        return base64.b64encode(self._crc.digest()).decode()

    @property
    def md5(self) -> str:
        return base64.b64encode(self._md5.digest()).decode()


def client_hashes(headers: Any, meta_hashes: dict[str, str]) -> dict[str, str]:
    """What the client says its bytes hash to (``x-goog-hash``, ``Content-MD5``, metadata), validated."""
    out = dict(meta_hashes)
    for item in (headers.get("x-goog-hash") or "").split(","):
        key, _, value = item.strip().partition("=")
        if not item.strip():
            continue
        if key not in ("crc32c", "md5") or not value:
            raise _invalid("x-goog-hash must be 'crc32c=<base64>' and/or 'md5=<base64>'")
        out["crc32c" if key == "crc32c" else "md5Hash"] = value
    md5 = headers.get("content-md5")
    if md5:
        out["md5Hash"] = md5.strip()
    for key, value in out.items():
        if re.fullmatch(r"[A-Za-z0-9+/]{6,24}={0,2}", value) is None:
            raise _invalid(f"the {key} the client sent is not a base64 checksum")
    return out


def check_client_hashes(sums: Checksums, claimed: dict[str, str]) -> None:
    for key, got in (("crc32c", sums.crc32c), ("md5Hash", sums.md5)):
        if key in claimed and claimed[key] != got:
            raise Refusal(
                400,
                "checksum_mismatch",
                f"the object's {key} does not match the bytes the gateway received; nothing was stored",
                hint="the upload was corrupted on the way; send it again",
            )


# -- object metadata ----------------------------------------------------------------------------------
def object_name(value: Any, param: str = "name") -> str:
    if not isinstance(value, str) or OBJECT_NAME.fullmatch(value) is None or ".." in value.split("/"):
        raise _invalid(
            "the object name must be 1-1024 characters of letters, digits and . _ / = + - (no '..' segments)",
            param=param,
        )
    return value


def check_metadata(gw: Gateway, raw: bytes, query_name: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The object resource the gateway will send (allow-listed, scanned) and the client's checksums."""
    doc = jsonbody.plain(jsonbody.loads(raw)) if raw.strip() else {}
    if not isinstance(doc, dict):
        raise _invalid("the object metadata must be a JSON object")
    extra = set(doc) - META_FIELDS - CHECKSUM_FIELDS
    if extra:
        raise _invalid(
            "the object metadata has a field the gateway does not forward; accepted: "
            + ", ".join(sorted(META_FIELDS | CHECKSUM_FIELDS)),
        )
    name = doc.get("name", query_name)
    if query_name is not None and doc.get("name", query_name) != query_name:
        raise _invalid("the object name in the query and in the metadata differ", param="name")
    meta: dict[str, Any] = {"name": object_name(name)}
    ctype = doc.get("contentType", "application/octet-stream")
    if not isinstance(ctype, str) or ctype.split(";", 1)[0].strip().lower() not in CONTENT_TYPES:
        raise Refusal(
            415,
            "invalid_upload",
            "this gateway stores JSONL training data only; contentType must be one of "
            + ", ".join(sorted(CONTENT_TYPES)),
            param="contentType",
        )
    meta["contentType"] = ctype.split(";", 1)[0].strip().lower()
    for key in ("cacheControl", "contentDisposition", "contentLanguage", "storageClass"):
        if key in doc:
            if not isinstance(doc[key], str) or re.fullmatch(r"[A-Za-z0-9 ,;=._/-]{0,256}", doc[key]) is None:
                raise _invalid(f"'{key}' has characters the gateway does not forward", param=key)
            meta[key] = doc[key]
    custom = doc.get("metadata")
    if custom is not None:
        ok = isinstance(custom, dict) and len(custom) <= 64
        ok = ok and all(isinstance(k, str) and isinstance(v, str) and len(k) + len(v) < 1024 for k, v in custom.items())
        if not ok:
            raise _invalid("'metadata' must be an object of at most 64 string keys and values", param="metadata")
        meta["metadata"] = dict(custom)
    scan = gw.engine.scan_record([meta["name"], meta.get("metadata", {})], 0)
    if any(f.action != "allow" for f in scan.findings):
        raise Refusal(
            403,
            "policy_block",
            "the object name or custom metadata carries data the policy does not allow; nothing was stored",
            rule_ids=sorted({f.rule_id for f in scan.findings}),
            hint="name objects and set metadata without personal data",
        )
    hashes = {k: doc[k] for k in CHECKSUM_FIELDS if isinstance(doc.get(k), str)}
    return meta, hashes


def passed_query(ex: Exchange) -> list[tuple[str, str]]:
    return [(k, v) for k, v in ex.query if k in PASSED_QUERY]


# -- scanning ---------------------------------------------------------------------------------------
def new_sink(gw: Gateway, spool: Spool) -> ScanSink:
    from bastion.adapters.vertex.records import checker

    # objects are Gemini tuning records (supervised or preference): the shape Vertex AI trains on
    return steps.records_sink(gw, spool, checker(gw.settings.remote_images == "allow"))


def _hashed_sink(gw: Gateway, spool: Spool) -> tuple[ScanSink, Checksums, Callable[[bytes], None]]:
    """The scan sink of an object body, the checksums of the bytes the client sent, and the writer feeding both."""
    sink = new_sink(gw, spool)
    sums = Checksums()

    def write(data: bytes) -> None:
        sums.update(data)
        sink.write(data)

    return sink, sums, write


# -- the gateway's own upstream write -----------------------------------------------------------------
async def _call(
    gw: Gateway,
    ex: Exchange,
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: list[tuple[str, str]],
    *,
    content: Any = None,
    content_type: str | None = None,
    content_length: int | None = None,
) -> httpx.Response:
    base = ex.headers
    ex.headers = [*base, *headers]
    try:
        await prime(ex.auth)
        reply = await gw.send(
            ex,
            method=method,
            path=path,
            query=query,
            content=content,
            content_type=content_type,
            content_length=content_length,
        )
    finally:
        ex.headers = base
    return reply.response


def _session_target(ex: Exchange, location: str, path: str) -> list[tuple[str, str]] | None:
    """The query of the upstream's session URI, if it points back at this upstream's upload path."""
    base = httpx.URL(ex.upstream.hosts["api"])
    try:
        url = httpx.URL(location)
    except httpx.InvalidURL:
        return None
    if (url.scheme, url.host, url.port) != (base.scheme, base.host, base.port):
        return None
    if url.path != base.path.rstrip("/") + path:
        return None
    query = list(url.params.multi_items())
    ids = [v for k, v in query if k == "upload_id"]
    if len(ids) != 1 or re.fullmatch(r"[A-Za-z0-9_.~-]{1,512}", ids[0]) is None:
        return None
    return query


async def put_object(
    gw: Gateway, ex: Exchange, bucket: str, meta: dict[str, Any], out: Spool, decision: str, facts: dict[str, Any]
) -> Response:
    """Write ``out`` as object ``meta['name']`` through a resumable session the gateway owns; record it."""
    path = f"/upload/storage/v1/b/{bucket}/o"
    init = json.dumps(meta).encode()
    sums = Checksums()

    def digest_out() -> None:
        for block in out.blocks():
            sums.update(block)

    out.close_write()
    await anyio.to_thread.run_sync(digest_out)
    query = [("uploadType", "resumable"), ("name", meta["name"]), *passed_query(ex)]
    resp = await _call(
        gw,
        ex,
        "POST",
        path,
        query,
        [("x-upload-content-type", meta["contentType"]), ("x-upload-content-length", str(out.size))],
        content=init,
        content_type="application/json; charset=UTF-8",
    )
    raw = await read_limited(resp, MAX_RESPONSE, "the upload session")
    session = _session_target(ex, resp.headers.get("location", ""), path) if resp.status_code == 200 else None
    if session is None:
        await gw.record(ex, decision, event="upstream_response", status=resp.status_code, stage="session")
        if resp.status_code < 400:
            raise Refusal(502, "upstream_error", "Cloud Storage did not open an upload session on its own host")
        return gw.buffered_response(resp.status_code, await anyio.to_thread.run_sync(gw.mask, raw), resp.headers)
    status, raw, headers = 0, b"", resp.headers
    try:
        offset = 0
        while True:
            length = min(UPSTREAM_CHUNK, out.size - offset)
            last = offset + length >= out.size
            extra = [("content-range", f"bytes {offset}-{offset + length - 1}/{out.size if last else '*'}")]
            if last:
                extra.append(("x-goog-hash", f"crc32c={sums.crc32c}"))
            resp = await _call(
                gw,
                ex,
                "PUT",
                path,
                session,
                extra,
                content=out.aiter_range(offset, length),
                content_type=meta["contentType"],
                content_length=length,
            )
            raw = await read_limited(resp, MAX_RESPONSE, "an upload chunk")
            status, headers = resp.status_code, resp.headers
            if last or status != 308:
                break
            offset += length
    except Refusal:
        await _cancel(gw, ex, path, session, decision, "transport")
        raise
    if status not in (200, 201):
        await _cancel(gw, ex, path, session, decision, "chunk")
        await gw.record(ex, decision, event="upstream_response", status=status, stage="chunk")
        masked = await anyio.to_thread.run_sync(gw.mask, raw)
        return gw.buffered_response(status if status >= 400 else 502, masked, headers)
    obj = _json(raw)
    generation = obj.get("generation")
    if obj.get("bucket") != bucket or obj.get("name") != meta["name"] or not isinstance(generation, (str, int)):
        await gw.record(ex, decision, event="upstream_response", status=status, stage="object")
        raise Refusal(502, "upstream_error", "Cloud Storage's answer does not name the object the gateway wrote")
    gen = str(generation)
    await anyio.to_thread.run_sync(ledger.remember, gw, ex, bucket, meta["name"], gen, facts, decision)
    ex.audit["object"] = {"bucket": bucket, "generation": gen, "crc32c": sums.crc32c, "bytes": out.size}
    await gw.record(ex, decision, event="upstream_response", status=status)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
    return gw.buffered_response(200, raw, headers)


async def _cancel(
    gw: Gateway, ex: Exchange, path: str, session: list[tuple[str, str]], decision: str, stage: str
) -> None:
    try:
        resp = await _call(gw, ex, "DELETE", path, session, [])
        await resp.aclose()
        cancelled = resp.status_code in (204, 499)
    except Refusal:
        cancelled = False
    await gw.record(ex, decision, event="upstream_session_cancelled", stage=stage, cancelled=cancelled)


def _json(raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


async def _scan_and_store(
    gw: Gateway, ex: Exchange, bucket: str, meta: dict[str, Any], sink: ScanSink, spool: Spool, request_digest: str
) -> Response:
    facts = steps.scanned(gw, ex, sink, "object")
    ex.audit["purpose"] = ledger.PURPOSE

    async def run() -> Response:
        decision = await steps.admit(gw, ex, facts)
        return await put_object(gw, ex, bucket, meta, spool, decision, facts)

    digest = hashlib.sha256(json.dumps([bucket, meta, facts["output_sha256"]]).encode()).hexdigest()
    return await gw.once(ex, request_digest + digest, run)


# -- POST /upload/storage/v1/b/{bucket}/o ---------------------------------------------------------------
async def objects_insert(gw: Gateway, ex: Exchange) -> Response:
    kind = dict(ex.query).get("uploadType")
    if kind == "resumable":
        return await resumable_start(gw, ex)
    query_name = dict(ex.query).get("name")
    spool = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten object")
    try:
        sink, sums, write = _hashed_sink(gw, spool)
        if kind == "media":
            if query_name is None:
                raise _invalid("uploadType=media needs the object name in the 'name' query parameter", "name")
            ctype = ex.request.headers.get("content-type", "application/octet-stream")
            meta, hashes = check_metadata(gw, json.dumps({"contentType": ctype}).encode(), query_name)
            await gw.feed(ex, gw.settings.max_upload_bytes, write)
        elif kind == "multipart":
            reader = RelatedReader(ex.request.headers.get("content-type"), write)
            await gw.feed(ex, gw.settings.max_upload_bytes, reader.write)
            reader.finish()
            meta, hashes = check_metadata(gw, reader.metadata, query_name)
            if reader.media_type is not None and "contentType" not in _json(reader.metadata):
                meta["contentType"] = check_metadata(
                    gw, json.dumps({"contentType": reader.media_type}).encode(), meta["name"]
                )[0]["contentType"]
        else:
            raise _invalid("uploadType must be media, multipart or resumable", "uploadType")
        await anyio.to_thread.run_sync(sink.close)
        check_client_hashes(sums, client_hashes(ex.request.headers, hashes))
        bucket = ex.ids["bucket"]
        return await _scan_and_store(gw, ex, bucket, meta, sink, spool, kind)
    finally:
        spool.discard()


class RelatedReader:
    """A ``multipart/related`` upload body (JSON metadata part, then the media part) read as it streams."""

    def __init__(self, content_type: str | None, media: Any) -> None:
        ctype, params = parse_options_header(content_type or "")
        boundary = params.get(b"boundary")
        if ctype != b"multipart/related" or not boundary or len(boundary) > 256:
            raise Refusal(415, "invalid_upload", "uploadType=multipart needs a multipart/related body with a boundary")
        self._media = media
        self._meta = bytearray()
        self._part = -1
        self._header = bytearray()
        self._value = bytearray()
        self._headers: dict[str, str] = {}
        self.media_type: str | None = None
        self._done = False
        self._error: Refusal | None = None
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._begin,
                "on_header_field": lambda d, s, e: self._header.extend(d[s:e]),
                "on_header_value": lambda d, s, e: self._value.extend(d[s:e]),
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_done,
                "on_part_data": self._data,
                "on_end": self._end,
            },
        )

    def _begin(self) -> None:
        self._part += 1
        self._headers = {}
        if self._part > 1:
            raise _invalid("a multipart upload has exactly two parts: the JSON metadata and the object")

    def _header_end(self) -> None:
        self._headers[self._header.decode("latin-1").lower()] = self._value.decode("latin-1").strip()
        self._header.clear()
        self._value.clear()

    def _headers_done(self) -> None:
        if set(self._headers) - {"content-type", "content-length"}:
            raise _invalid("a multipart part has headers other than Content-Type")
        ctype = self._headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if self._part == 0 and ctype != "application/json":
            raise _invalid("the first part of a multipart upload must be the JSON metadata")
        if self._part == 1:
            self.media_type = ctype or None

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part == 0:
            self._meta += data[start:end]
            if len(self._meta) > MAX_METADATA:
                raise _invalid("the metadata part is larger than 64 KiB")
        else:
            self._media(bytes(data[start:end]))

    def _end(self) -> None:
        self._done = True

    def write(self, data: bytes) -> None:
        try:
            self.parser.write(data)
        except MultipartParseError:
            raise _invalid("the multipart/related body is malformed") from None

    def finish(self) -> None:
        if not self._done or self._part != 1:
            raise _invalid("the multipart upload is truncated or lacks the object part")

    @property
    def metadata(self) -> bytes:
        return bytes(self._meta)


# -- resumable sessions held by the gateway -------------------------------------------------------------
class LiveScan:
    """The scanner of one resumable session in this process: fed chunk by chunk, output spooled."""

    def __init__(self, gw: Gateway) -> None:
        self.spool = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten object")
        self.sink = new_sink(gw, self.spool)
        self.sums = Checksums()
        self.offset = 0
        self.used = datetime.now(UTC)

    def feed(self, data: bytes) -> None:
        self.sums.update(data)
        self.sink.write(data)
        self.offset += len(data)

    def discard(self) -> None:
        self.spool.discard()


class LiveScans:
    """Per-process live scanners by upload id; at most :attr:`limit`, idle ones dropped after :attr:`idle`.

    A dropped scanner costs nothing but time: the last chunk then rescans the held chunks.
    """

    limit = 64
    idle = timedelta(hours=1)

    def __init__(self) -> None:
        self._scans: dict[str, LiveScan] = {}

    def get(self, upload_id: str) -> LiveScan | None:
        return self._scans.get(upload_id)

    def start(self, gw: Gateway, upload_id: str) -> LiveScan:
        now = datetime.now(UTC)
        for key, scan in list(self._scans.items()):
            if now - scan.used > self.idle:
                self.drop(key)
        while len(self._scans) >= self.limit:
            self.drop(min(self._scans, key=lambda k: self._scans[k].used))
        scan = self._scans[upload_id] = LiveScan(gw)
        return scan

    def take(self, upload_id: str) -> LiveScan | None:
        """Remove and return the scanner (the caller now owns its spool)."""
        return self._scans.pop(upload_id, None)

    def drop(self, upload_id: str) -> None:
        scan = self._scans.pop(upload_id, None)
        if scan is not None:
            scan.discard()


def live_scans(gw: Gateway) -> LiveScans:
    scans: LiveScans | None = getattr(gw, "_gcs_live_scans", None)
    if scans is None:
        scans = LiveScans()
        gw._gcs_live_scans = scans  # type: ignore[attr-defined]
    return scans


async def _scan_chunk(gw: Gateway, ex: Exchange, up: HeldUpload, first: int, handle: str) -> None:
    """Feed a held chunk to the session's live scanner; end the session on a refusal (blocked record)."""
    scans = live_scans(gw)
    live = scans.get(up.upload_id)
    if live is None and first == 0:
        live = scans.start(gw, up.upload_id)
    if live is None or live.offset != first:
        scans.drop(up.upload_id)  # another process took chunks of this session: the last chunk rescans
        return
    live.used = datetime.now(UTC)

    def feed() -> None:
        for block in gw.state.parts.read(handle):
            live.feed(block)

    try:
        await anyio.to_thread.run_sync(feed)
        refusal = (
            decision_refusal(summary_facts(live.sink), "object") if live.sink.summary.decision == "block" else None
        )
    except Refusal as exc:
        refusal = exc
    if refusal is not None:
        scans.drop(up.upload_id)
        await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)
        ex.audit["scan"] = {"stage": "chunk", "chunk_first_byte": first}
        raise refusal


async def resumable_start(gw: Gateway, ex: Exchange) -> Response:
    now = datetime.now(UTC)
    await anyio.to_thread.run_sync(gw.state.expire, now)
    raw = await gw.read_body(ex, MAX_METADATA)
    meta, hashes = check_metadata(gw, raw, dict(ex.query).get("name"))
    declared_type = ex.request.headers.get("x-upload-content-type")
    if declared_type is not None and "contentType" not in _json(raw):
        meta["contentType"] = check_metadata(gw, json.dumps({"contentType": declared_type}).encode(), meta["name"])[0][
            "contentType"
        ]
    declared = ex.request.headers.get("x-upload-content-length")
    if declared is not None and not (declared.isdigit() and 0 < int(declared) <= gw.settings.max_upload_bytes):
        raise Refusal(
            413 if declared.isdigit() else 400,
            "upload_too_large" if declared.isdigit() else "invalid_upload",
            f"X-Upload-Content-Length must be a size between 1 and this gateway's limit of "
            f"{gw.settings.max_upload_bytes} bytes",
        )
    up = HeldUpload(
        upload_id=minted.random_id("bst", 32),
        upstream=ex.upstream_name,
        client=ex.fingerprint,
        purpose=ledger.PURPOSE,
        filename=meta["name"],
        mime_type=meta["contentType"],
        bytes=int(declared) if declared else 0,
        created_at=now,
        expires_at=now + SESSION_TTL,
        meta={"bucket": ex.ids["bucket"], "object": meta, "hashes": hashes, "query": passed_query(ex)},
    )
    await anyio.to_thread.run_sync(gw.state.upload_create, up)
    ex.audit.update(upload_id=up.upload_id, declared_bytes=up.bytes or None)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_opened")
    url = ex.request.url
    session = f"{url.scheme}://{url.netloc}{url.path}?uploadType=resumable&upload_id={up.upload_id}"
    return Response(b"", status_code=200, headers={"location": session, "x-guploader-uploadid": up.upload_id})


async def _session(gw: Gateway, ex: Exchange) -> HeldUpload:
    upload_id = dict(ex.query).get("upload_id", "")
    up = await anyio.to_thread.run_sync(gw.state.upload_get, upload_id) if _UPLOAD_ID.fullmatch(upload_id) else None
    if up is None or up.upstream != ex.upstream_name or up.meta.get("bucket") != ex.ids["bucket"]:
        raise Refusal(
            404,
            "upload_not_found",
            "no resumable upload session with that id on this gateway",
            hint="start the upload again (uploadType=resumable) through this gateway",
        )
    if up.state != "completed" and datetime.now(UTC) > up.expires_at:
        await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)
        raise Refusal(404, "upload_expired", "the resumable upload session expired (sessions live one week)")
    ex.audit["upload_id"] = up.upload_id
    return up


def _incomplete(held: int) -> Response:
    headers = {"range": f"bytes=0-{held - 1}"} if held else {}
    return Response(b"", status_code=308, headers={**headers, "content-length": "0"})


async def resumable_chunk(gw: Gateway, ex: Exchange) -> Response:
    up = await _session(gw, ex)
    crange = ex.request.headers.get("content-range", "")
    m = _CONTENT_RANGE.fullmatch(crange.strip())
    if m is None:
        raise _invalid("a chunk needs 'Content-Range: bytes <first>-<last>/<total or *>' (or 'bytes */<total>')")
    total = None if m["total"] == "*" else int(m["total"])
    if up.state == "completed":
        assert up.result is not None
        await gw.record(ex, "replay", event="upload_complete_replayed", status=200)
        return Response(up.result, status_code=200, media_type="application/json")
    parts = await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id)
    held = sum(p.size for p in parts)
    if m["first"] is None:  # a status query, or the end of an upload whose bytes were all sent
        await gw.read_body(ex, 0)
        if total is not None and total == held and held > 0:
            return await _complete(gw, ex, up)
        return _incomplete(held)
    first, last = int(m["first"]), int(m["last"])
    if last < first or (total is not None and last >= total):
        raise _invalid("the chunk's Content-Range is not a valid byte range")
    if first != held:
        raise Refusal(
            409,
            "chunk_out_of_order",
            f"this chunk starts at byte {first} but the gateway holds {held} bytes of the upload",
            hint="ask for the session's status ('Content-Range: bytes */*') and resume from there",
        )
    size = last - first + 1
    if held + size > gw.settings.max_upload_bytes or (up.bytes and held + size > up.bytes):
        raise Refusal(
            413, "upload_too_large", "the upload is larger than its declared size or than this gateway's limit"
        )
    writer = gw.state.parts.writer()
    try:
        got = await gw.feed(ex, size, writer.write)
        if got != size:
            raise _invalid(f"the chunk has {got} bytes but its Content-Range says {size}")
        blob = await anyio.to_thread.run_sync(writer.commit)
    except BaseException:
        writer.discard()
        raise
    part = HeldPart("chunk" + secrets.token_hex(12), blob.size, blob.sha256, blob.handle, datetime.now(UTC))
    try:
        await anyio.to_thread.run_sync(gw.state.upload_add_part, up.upload_id, part)
    except StateConflict:
        raise Refusal(409, "upload_not_pending", "the upload session no longer takes chunks") from None
    now_held = sum(p.size for p in await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id))
    if now_held != first + size:  # two chunks for the same range at once: the session cannot be trusted
        live_scans(gw).drop(up.upload_id)
        await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)
        raise Refusal(
            409,
            "chunk_out_of_order",
            "two chunks for the same byte range arrived at once; the upload session was ended, nothing was stored",
            hint="start the upload again and send its chunks one after the other",
        )
    await _scan_chunk(gw, ex, up, first, blob.handle)
    held += size
    ex.audit.update(chunk_bytes=size, chunk_sha256=blob.sha256, held_bytes=held)
    if total is not None and held == total:
        return await _complete(gw, ex, up)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_chunk_held")
    return _incomplete(held)


async def _complete(gw: Gateway, ex: Exchange, up: HeldUpload) -> Response:
    hashes = client_hashes(ex.request.headers, dict(up.meta.get("hashes") or {}))
    busy = Refusal(
        409,
        "upload_in_progress",
        "this upload is being completed by another request",
        hint="ask for the session's status a little later",
    )
    return await steps.complete_once(gw, ex, up.upload_id, lambda held: _complete_held(gw, ex, held, hashes), busy)


async def _complete_held(gw: Gateway, ex: Exchange, up: HeldUpload, hashes: dict[str, str]) -> Response:
    parts = await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id)
    total = sum(p.size for p in parts)
    live = live_scans(gw).get(up.upload_id)
    if live is not None and live.offset == total:  # every chunk was scanned as it came, here
        spool, sink, sums = live.spool, live.sink, live.sums
        live_scans(gw).take(up.upload_id)
        ex.audit["scanned_as_chunks_arrived"] = True
    else:
        live_scans(gw).drop(up.upload_id)
        spool = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten object")
        sink = new_sink(gw, spool)
        sums = Checksums()
    try:

        def scan_all() -> None:
            if live is None or live.offset != total:
                for part in parts:
                    for block in gw.state.parts.read(part.blob):
                        sums.update(block)
                        sink.write(block)
            sink.close()

        await anyio.to_thread.run_sync(scan_all)
        check_client_hashes(sums, hashes)
        ex.query = list(up.meta.get("query") or [])
        meta = dict(up.meta["object"])
        facts = steps.scanned(gw, ex, sink, "object")
        ex.audit["purpose"] = ledger.PURPOSE
        decision = await steps.admit(gw, ex, facts)
        resp = await put_object(gw, ex, str(up.meta["bucket"]), meta, spool, decision, facts)
        if resp.status_code == 200:
            await anyio.to_thread.run_sync(gw.state.upload_set_result, up.upload_id, bytes(resp.body), None)
        return resp
    finally:
        spool.discard()


async def resumable_cancel(gw: Gateway, ex: Exchange) -> Response:
    up = await _session(gw, ex)
    if up.state == "completed":
        raise Refusal(409, "upload_not_pending", "the upload already completed")
    await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)
    live_scans(gw).drop(up.upload_id)
    await gw.record(ex, "cancel", event="upload_cancelled")
    return Response(b"", status_code=499)


# -- XML API PUT /{bucket}/{object} ---------------------------------------------------------------------
async def xml_put(gw: Gateway, ex: Exchange) -> Response:
    """An XML-API object PUT, scanned and written through the JSON API (answered in XML-API form)."""
    headers = ex.request.headers
    ctype = headers.get("content-type", "application/octet-stream")
    meta, _ = check_metadata(gw, json.dumps({"contentType": ctype}).encode(), object_name(ex.ids["object"], "object"))
    spool = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten object")
    try:
        sink, sums, write = _hashed_sink(gw, spool)
        await gw.feed(ex, gw.settings.max_upload_bytes, write)
        await anyio.to_thread.run_sync(sink.close)
        check_client_hashes(sums, client_hashes(headers, {}))
        resp = await _scan_and_store(gw, ex, ex.ids["bucket"], meta, sink, spool, "xml")
        if resp.status_code != 200:
            return resp
        obj = _json(bytes(resp.body))
        out = Response(b"", status_code=200)
        md5 = obj.get("md5Hash")
        hashes = [f"crc32c={obj['crc32c']}"] if isinstance(obj.get("crc32c"), str) else []
        if isinstance(md5, str):
            hashes.append(f"md5={md5}")
            out.headers["etag"] = '"' + base64.b64decode(md5).hex() + '"'
        out.headers["x-goog-generation"] = str(obj.get("generation", ""))
        if hashes:
            out.headers["x-goog-hash"] = ",".join(hashes)
        return out
    finally:
        spool.discard()
