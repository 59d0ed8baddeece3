"""The S3 writes the gateway terminates: PutObject and multipart uploads, scanned, re-issued with its own keys.

Every request is first authenticated: the client's SigV4 signature is recomputed (botocore) with the
secret of its access key id from the upstream's ``aws.clients``; unknown keys and bad signatures are
refused before the body is read. Bodies are decoded as they stream (:class:`ObjectBody`: aws-chunked,
signed chunks, every checksum the client claims verified), fed through the JSONL scanner (records
checked against the Bedrock formats) into a spool on disk, and only an admitted object is written
upstream, with a payload hash and SigV4 signature of the gateway's own. No client checksum header,
Content-MD5, trailer or payload hash is forwarded.

Multipart uploads are held by the gateway (a JSONL line can span parts, and redaction changes part
sizes): ``CreateMultipartUpload`` and ``UploadPart`` are answered by the gateway (parts sealed in the
state store, ETags of its own); ``CompleteMultipartUpload`` checks the client's part list against
those ETags, scans the parts in that order and writes the result upstream as a multipart upload of
its own whose parts are all ``PART_SIZE`` (≥ 5 MiB) except the last. The object lands in the ledger
(``s3://bucket/key`` + ETag + digests) that Bedrock job references are checked against.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import anyio
import anyio.to_thread
from starlette.responses import Response

from bastion.adapters.aws.body import ObjectBody, bad
from bastion.adapters.aws.sigv4 import AwsKeys, SigV4Auth, verify_client
from bastion.adapters.bedrock.records import S3_URI, BedrockRecordChecker
from bastion.adapters.openai import steps as common
from bastion.adapters.s3 import xml
from bastion.adapters.s3.names import ledger_ref
from bastion.gateway import minted
from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import read_limited
from bastion.gateway.scan import ScanSink
from bastion.gateway.spool import Spool
from bastion.gateway.state import HeldPart, HeldUpload, StateConflict

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway
    from bastion.gateway.spec import Step

PURPOSE = "s3-object"
MIN_PART = 5 * 1024 * 1024  # S3: every part but the last at least 5 MiB (EntityTooSmall)
PART_SIZE = 16 * 1024 * 1024  # what the gateway sends upstream (raised so that at most 10,000 parts are needed)
MAX_PARTS = 10_000
MAX_PART = 5 * 1024**3
UPLOAD_TTL = timedelta(days=7)
MAX_XML = 1024 * 1024
FEED_BATCH = 1024 * 1024
BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
COPY_HEADERS = ("x-amz-copy-source", "x-amz-copy-source-range")


# -- shared: who is asking, for which object ---------------------------------------------------------------
@dataclass
class Target:
    bucket: str
    key: str

    @property
    def path(self) -> str:
        """Path-style upstream path (the gateway writes it from validated parts)."""
        return f"/{self.bucket}/{quote(self.key, safe='/~')}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def keys_of(gw: Gateway, ex: Exchange) -> AwsKeys:
    keys = gw.provider_state.get(ex.upstream_name)
    assert isinstance(keys, AwsKeys)
    return keys


def authenticate(gw: Gateway, ex: Exchange, service: str, body: bytes | None = None) -> Any:
    """Verify the client's SigV4 signature over the request exactly as it arrived; set the gateway's auth."""
    keys = keys_of(gw, ex)
    req = ex.request
    raw_path = req.scope.get("raw_path") or req.url.path.encode()
    query = req.scope.get("query_string", b"")
    host = req.headers.get("host", "")
    url = f"{req.url.scheme}://{host}{raw_path.decode('latin-1')}" + (f"?{query.decode('latin-1')}" if query else "")
    sig = verify_client(keys, method=req.method, url=url, headers=req.headers, service=service, body=body)
    ex.audit["access_key_id"] = sig.access_key_id
    ex.auth = SigV4Auth(keys.credentials, service, keys.region)
    return sig


def target_of(gw: Gateway, ex: Exchange) -> Target:
    """Bucket and key from the path (path-style) or the Host header (virtual-hosted)."""
    keys = keys_of(gw, ex)
    path = ex.ids["target"]
    host = ex.request.headers.get("host", "").rsplit(":", 1)[0].lower()
    if keys.virtual_host and host.endswith("." + keys.virtual_host):
        bucket, key = host[: -len(keys.virtual_host) - 1], path
    else:
        bucket, _, key = path.partition("/")
    if BUCKET.fullmatch(bucket) is None or ".." in bucket:
        raise Refusal(400, "InvalidBucketName", "the bucket name is not a valid S3 bucket name")
    if not key:
        raise Refusal(
            403,
            "route_not_allowed",
            "bucket-level operations are not forwarded by this gateway (it terminates object writes only)",
            hint="create and manage buckets directly with S3",
        )
    if len(key.encode()) > 1024:
        raise Refusal(400, "KeyTooLongError", "the object key is longer than 1024 bytes")
    ex.audit["bucket"] = bucket
    ex.audit["key_sha256"] = "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return Target(bucket, key)


def refuse_copies(ex: Exchange) -> None:
    if any(h in ex.request.headers for h in COPY_HEADERS):
        raise Refusal(
            403,
            "copy_not_allowed",
            "server-side copies (CopyObject, UploadPartCopy) are refused: their bytes never pass the gateway's scan",
            hint="download the object and upload it through the gateway, which scans it",
        )


def new_sink(gw: Gateway, spool: Spool) -> tuple[ScanSink, BedrockRecordChecker]:
    from bastion.policies import JsonlScanner

    scanner = JsonlScanner(gw.engine, source="upload", max_line_bytes=gw.settings.max_line_bytes)
    checker = BedrockRecordChecker()
    return ScanSink(scanner, spool, checker=checker), checker


async def read_object(gw: Gateway, ex: Exchange, body: ObjectBody, write: Any, limit: int) -> int:
    """Stream the client's body through ``body`` (decoded, checked) into ``write`` (run off the loop)."""
    from starlette.requests import ClientDisconnect

    buf = bytearray()
    total = 0
    try:
        async for chunk in ex.request.stream():
            buf += body.feed(chunk)
            if body.size > limit:
                raise Refusal(
                    413,
                    "EntityTooLarge",
                    f"the object is larger than this gateway's limit of {limit} bytes",
                    hint="split the dataset, or ask the operator to raise gateway.max_upload_bytes",
                )
            if len(buf) >= FEED_BATCH:
                data, buf = bytes(buf), bytearray()
                total += len(data)
                await anyio.to_thread.run_sync(write, data)
    except ClientDisconnect:
        raise Refusal(400, "IncompleteBody", "the client closed the connection before the body ended") from None
    body.finish()
    if buf:
        total += len(buf)
        await anyio.to_thread.run_sync(write, bytes(buf))
    if body.unverified:
        ex.audit["checksums_unverified"] = body.unverified
    return total


async def check_media(gw: Gateway, ex: Exchange, uris: list[str]) -> None:
    """``s3Location`` media in records must be objects this gateway scanned (ledger + current ETag)."""
    from bastion.adapters.s3.ledger import unscanned

    if not uris:
        return
    missing = await unscanned(gw, sorted(set(uris)))
    if missing:
        raise Refusal(
            403,
            "unscanned_object",
            f"{len(missing)} s3Location URI(s) in the records name objects this gateway did not scan",
            hint="media the job reads must be written through the gateway; inline media is not scanned either",
        )


def admit_object(gw: Gateway, ex: Exchange, target: Target, etag: str, facts: dict[str, Any], decision: str) -> None:
    common.remember(gw, ex, ledger_ref(target.uri, etag), facts, decision, PURPOSE)


def _etag(value: str | None) -> str | None:
    return value if value is not None and re.fullmatch(r'"?[0-9A-Za-z-]{1,80}"?', value) else None


async def _upstream_xml(
    gw: Gateway, ex: Exchange, method: str, target: Target, query: list[tuple[str, str]], content: bytes | None = None
) -> tuple[int, bytes, Any]:
    headers = ex.headers
    try:
        ex.headers = [h for h in headers if h[0] != "content-type"] if content is not None else headers
        if content is not None:
            ex.headers = [*ex.headers, ("x-amz-content-sha256", hashlib.sha256(content).hexdigest())]
        reply = await gw.send(
            ex,
            method=method,
            path=target.path,
            query=query,
            content=content,
            content_type="application/xml" if content is not None else None,
        )
    finally:
        ex.headers = headers
    raw = await read_limited(reply.response, 4 * 1024 * 1024, f"S3 {method}")
    return reply.response.status_code, raw, reply.response.headers


def _upstream_failed(status: int, what: str) -> Refusal:
    return Refusal(
        502 if status < 500 else status,
        "upstream_error",
        f"S3 refused the gateway's {what} (HTTP {status}); nothing more was sent",
        hint="the gateway operator can see the S3 error code in the audit log",
    )


def _error_code(raw: bytes) -> str | None:
    doc = xml.parse(raw)
    code = xml.child_text(doc, "Code") if doc is not None and xml.local(doc.tag) == "Error" else None
    return code if code and code.isidentifier() else None


# -- PutObject ---------------------------------------------------------------------------------------------
async def put_object(gw: Gateway, ex: Exchange) -> Response:
    sig = authenticate(gw, ex, "s3")
    refuse_copies(ex)
    target = target_of(gw, ex)
    body = ObjectBody(ex.request.headers, sig)
    spool = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten object")
    try:
        sink, checker = new_sink(gw, spool)
        await read_object(gw, ex, body, sink.write, gw.settings.max_upload_bytes)
        await anyio.to_thread.run_sync(sink.close)
        facts = common.scanned(gw, ex, sink, "object")
        await check_media(gw, ex, checker.media_uris)
        decision = await common.admit(gw, ex, facts)
        ex.headers = [*ex.headers, ("x-amz-content-sha256", spool.sha256)]
        reply = await gw.send(
            ex, method="PUT", path=target.path, query=[], content=spool.aiter(), content_length=spool.size
        )
        status = reply.response.status_code
        if status != 200:
            return await gw.relay(ex, reply, decision, event="upstream_response", buffer=True)
        await reply.response.aclose()
        etag = _etag(reply.response.headers.get("etag"))
        if etag is None:
            raise _upstream_failed(status, "PutObject (no ETag in the answer)")
        version = reply.response.headers.get("x-amz-version-id")
        await anyio.to_thread.run_sync(admit_object, gw, ex, target, etag, facts, decision)
        await gw.record(
            ex,
            decision,
            event="upstream_response",
            status=status,
            etag=etag,
            version_id=version if version and version.isprintable() and len(version) < 1100 else None,
        )
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
        headers = {"ETag": etag, **({"x-amz-version-id": version} if version else {})}
        return Response(b"", status_code=200, headers=headers)
    finally:
        spool.discard()


# -- multipart: held by the gateway ------------------------------------------------------------------------
def _not_found() -> Refusal:
    return Refusal(
        404,
        "NoSuchUpload",
        "the specified multipart upload does not exist on this gateway for this client and object",
        hint="create the upload through this gateway with the same access key",
    )


async def _held(gw: Gateway, ex: Exchange, target: Target) -> HeldUpload:
    upload_id = dict(ex.query).get("uploadId") or ex.request.query_params.get("uploadId", "")
    up = await anyio.to_thread.run_sync(gw.state.upload_get, upload_id)
    if (
        up is None
        or up.upstream != ex.upstream_name
        or up.client != ex.fingerprint
        or up.meta.get("bucket") != target.bucket
        or up.meta.get("key") != target.key
    ):
        raise _not_found()
    ex.audit["upload_id"] = up.upload_id
    return up


async def create_multipart_upload(gw: Gateway, ex: Exchange) -> Response:
    authenticate(gw, ex, "s3")
    refuse_copies(ex)
    target = target_of(gw, ex)
    now = datetime.now(UTC)
    await anyio.to_thread.run_sync(gw.state.expire, now)
    body = await gw.read_body(ex, 64 * 1024)
    if body:
        raise bad("InvalidRequest", "CreateMultipartUpload takes no body")
    up = HeldUpload(
        upload_id=minted.random_id("bst", 48),
        upstream=ex.upstream_name,
        client=ex.fingerprint,
        purpose=PURPOSE,
        filename=ex.audit["key_sha256"],
        mime_type=dict(ex.headers).get("content-type", "application/octet-stream"),
        bytes=0,
        created_at=now,
        expires_at=now + UPLOAD_TTL,
        meta={"bucket": target.bucket, "key": target.key, "headers": [list(h) for h in ex.headers]},
    )
    await anyio.to_thread.run_sync(gw.state.upload_create, up)
    ex.audit["upload_id"] = up.upload_id
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_opened")
    doc = xml.document("InitiateMultipartUploadResult", Bucket=target.bucket, Key=target.key, UploadId=up.upload_id)
    return Response(doc, status_code=200, media_type="application/xml")


def _part_number(ex: Exchange) -> int:
    raw = ex.request.query_params.get("partNumber", "")
    n = int(raw) if raw.isdigit() else 0
    if not 1 <= n <= MAX_PARTS:
        raise Refusal(400, "InvalidArgument", "partNumber must be a whole number between 1 and 10000")
    return n


def part_etag(sha256: str) -> str:
    """The ETag the gateway gives a held part (the client lists it in CompleteMultipartUpload)."""
    return f'"{sha256[:32]}"'


async def upload_part(gw: Gateway, ex: Exchange) -> Response:
    sig = authenticate(gw, ex, "s3")
    refuse_copies(ex)
    target = target_of(gw, ex)
    number = _part_number(ex)
    up = await _held(gw, ex, target)
    if up.state != "open":
        raise Refusal(409, "NoSuchUpload", "the multipart upload is being completed or was completed")
    body = ObjectBody(ex.request.headers, sig)
    # the parts held for this upload count against the object limit (a re-sent part number counts twice)
    held = sum(p.size for p in await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id))
    writer = gw.state.parts.writer()
    try:
        await read_object(gw, ex, body, writer.write, min(MAX_PART, gw.settings.max_upload_bytes - held))
        blob = await anyio.to_thread.run_sync(writer.commit)
    except BaseException:
        writer.discard()
        raise
    part = HeldPart(f"{number:05d}.{secrets.token_hex(6)}", blob.size, blob.sha256, blob.handle, datetime.now(UTC))
    try:
        await anyio.to_thread.run_sync(gw.state.upload_add_part, up.upload_id, part)
    except StateConflict:
        raise Refusal(409, "NoSuchUpload", "the multipart upload no longer takes parts") from None
    ex.audit.update(part_number=number, part_bytes=part.size, part_sha256=part.sha256)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_part_held")
    return Response(b"", status_code=200, headers={"ETag": part_etag(part.sha256)})


async def abort_multipart_upload(gw: Gateway, ex: Exchange) -> Response:
    authenticate(gw, ex, "s3")
    target = target_of(gw, ex)
    up = await _held(gw, ex, target)
    if up.state != "open":
        raise Refusal(409, "NoSuchUpload", "the multipart upload is being completed or was completed")
    await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "cancel").inc()
    await gw.record(ex, "cancel", event="upload_cancelled")
    return Response(b"", status_code=204)


def _client_parts(raw: bytes) -> list[tuple[int, str]]:
    doc = xml.parse(raw)
    if doc is None or xml.local(doc.tag) != "CompleteMultipartUpload":
        raise Refusal(400, "MalformedXML", "the CompleteMultipartUpload body is not the XML S3 expects")
    parts: list[tuple[int, str]] = []
    for node in doc:
        if xml.local(node.tag) != "Part":
            continue
        number = xml.child_text(node, "PartNumber") or ""
        etag = (xml.child_text(node, "ETag") or "").strip()
        if not number.isdigit() or not etag:
            raise Refusal(400, "MalformedXML", "every Part needs a PartNumber and an ETag")
        parts.append((int(number), etag if etag.startswith('"') else f'"{etag}"'))
    if not parts:
        raise Refusal(400, "MalformedXML", "the part list is empty")
    numbers = [n for n, _ in parts]
    if numbers != sorted(set(numbers)):
        raise Refusal(400, "InvalidPartOrder", "the list of parts was not in ascending order (or had a repeat)")
    return parts


async def complete_multipart_upload(gw: Gateway, ex: Exchange) -> Response:
    authenticate(gw, ex, "s3")
    target = target_of(gw, ex)
    up = await _held(gw, ex, target)
    raw = await gw.read_body(ex, MAX_XML)
    # the body is covered by the signature's payload hash (botocore signs it; checked here)
    claimed = ex.request.headers.get("x-amz-content-sha256", "")
    if re.fullmatch(r"[0-9a-f]{64}", claimed) and hashlib.sha256(raw).hexdigest() != claimed:
        raise bad("XAmzContentSHA256Mismatch", "the provided x-amz-content-sha256 header does not match the body")
    wanted = _client_parts(raw)
    busy = Refusal(409, "OperationAborted", "the multipart upload is being completed by another request")
    return await common.complete_once(
        gw, ex, up.upload_id, lambda held: _complete(gw, ex, held, target, wanted), busy, media_type="application/xml"
    )


async def _complete(
    gw: Gateway, ex: Exchange, up: HeldUpload, target: Target, wanted: list[tuple[int, str]]
) -> Response:
    held = await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id)
    latest: dict[int, HeldPart] = {}
    for p in held:  # in the order they were held: a re-sent part number replaces the earlier one
        latest[int(p.part_id.split(".", 1)[0])] = p
    chosen: list[HeldPart] = []
    for number, etag in wanted:
        part = latest.get(number)
        if part is None or part_etag(part.sha256) != etag:
            raise Refusal(
                400,
                "InvalidPart",
                f"part {number} was not uploaded through this gateway for this upload, or its ETag does not match",
                hint="list the ETags the gateway returned for UploadPart",
            )
        chosen.append(part)
    out = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten object")
    try:
        sink, checker = new_sink(gw, out)

        def scan_all() -> None:
            for part in chosen:
                for block in gw.state.parts.read(part.blob):
                    sink.write(block)
            sink.close()

        await anyio.to_thread.run_sync(scan_all)
        facts = common.scanned(gw, ex, sink, "object")
        await check_media(gw, ex, checker.media_uris)
        ex.audit["client_parts"] = len(chosen)
        decision = await common.admit(gw, ex, facts)
        ex.headers = [(str(k), str(v)) for k, v in up.meta.get("headers", [])]
        etag, result = await _write_multipart(gw, ex, target, out)
        await anyio.to_thread.run_sync(admit_object, gw, ex, target, etag, facts, decision)
        await anyio.to_thread.run_sync(gw.state.upload_set_result, up.upload_id, result, None)
        await gw.record(ex, decision, event="upstream_response", status=200, etag=etag)
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
        return Response(result, status_code=200, media_type="application/xml")
    finally:
        out.discard()


def part_plan(size: int) -> list[tuple[int, int]]:
    """(offset, length) of the gateway's upstream parts: all ``PART_SIZE`` (≥ 5 MiB) but the last."""
    part = max(PART_SIZE, math.ceil(size / MAX_PARTS))
    return [(off, min(part, size - off)) for off in range(0, size, part)] or [(0, 0)]


def _range_sha256(spool: Spool, offset: int, length: int) -> str:
    h = hashlib.sha256()
    for block in spool.blocks(offset, length):
        h.update(block)
    return h.hexdigest()


async def _write_multipart(gw: Gateway, ex: Exchange, target: Target, out: Spool) -> tuple[str, bytes]:
    """Create, send the parts of, and complete the gateway's own multipart upload; abort it on failure."""
    status, raw, _ = await _upstream_xml(gw, ex, "POST", target, [("uploads", "")])
    doc = xml.parse(raw) if status == 200 else None
    remote = xml.child_text(doc, "UploadId") if doc is not None else None
    if not remote or not remote.isprintable() or len(remote) > 1024:
        ex.audit["upstream_error"] = _error_code(raw)
        raise _upstream_failed(status, "CreateMultipartUpload")
    ex.audit["upstream_upload_id_sha256"] = "sha256:" + hashlib.sha256(remote.encode()).hexdigest()[:16]
    etags: list[str] = []
    headers = ex.headers
    try:
        for number, (offset, length) in enumerate(part_plan(out.size), start=1):
            payload = await anyio.to_thread.run_sync(_range_sha256, out, offset, length)
            ex.headers = [h for h in headers if h[0] != "content-type"] + [("x-amz-content-sha256", payload)]
            content: AsyncIterator[bytes] = out.aiter_range(offset, length)
            reply = await gw.send(
                ex,
                method="PUT",
                path=target.path,
                query=[("partNumber", str(number)), ("uploadId", remote)],
                content=content,
                content_length=length,
            )
            praw = await read_limited(reply.response, 64 * 1024, "S3 UploadPart")
            etag = _etag(reply.response.headers.get("etag"))
            if reply.response.status_code != 200 or etag is None:
                ex.audit["upstream_error"] = _error_code(praw)
                raise _upstream_failed(reply.response.status_code, f"UploadPart {number}")
            etags.append(etag)
        ex.headers = []
        listing = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{xml.escape(e)}</ETag></Part>"
            for n, e in enumerate(etags, start=1)
        )
        body = f'<CompleteMultipartUpload xmlns="{xml.NS}">{listing}</CompleteMultipartUpload>'.encode()
        status, raw, _ = await _upstream_xml(gw, ex, "POST", target, [("uploadId", remote)], body)
        doc = xml.parse(raw) if status == 200 else None
        final = _etag(xml.child_text(doc, "ETag")) if doc is not None and xml.local(doc.tag) != "Error" else None
        if final is None:  # S3 may answer 200 with an <Error> document
            ex.audit["upstream_error"] = _error_code(raw)
            raise _upstream_failed(status, "CompleteMultipartUpload")
    except BaseException:
        ex.headers = []
        with anyio.CancelScope(shield=True):
            try:
                await _upstream_xml(gw, ex, "DELETE", target, [("uploadId", remote)])
                ex.audit["remote_upload_aborted"] = True
            except Exception:
                ex.audit["remote_upload_aborted"] = False
        raise
    finally:
        ex.headers = headers
    ex.audit["upstream_parts"] = len(etags)
    location = f"{ex.upstream.config.base_url}{target.path}"
    result = xml.document(
        "CompleteMultipartUploadResult", Location=location, Bucket=target.bucket, Key=target.key, ETag=final
    )
    return final, result


STEPS: dict[str, Step] = {
    "s3.put_object": put_object,
    "s3.create_multipart_upload": create_multipart_upload,
    "s3.upload_part": upload_part,
    "s3.complete_multipart_upload": complete_multipart_upload,
    "s3.abort_multipart_upload": abort_multipart_upload,
}

__all__ = ["PART_SIZE", "S3_URI", "STEPS", "Target", "authenticate", "ledger_ref", "part_plan"]
