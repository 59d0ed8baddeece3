"""The OpenAI steps that are more than a scanned JSON forward: ``POST /files`` and the Uploads API.

Files: the multipart body is parsed as it streams; the ``file`` part goes through the JSONL scanner
(record shape checked per purpose) into a spool; the text fields are validated (purpose,
``expires_after[...]``); the filename is sanitised and scanned. After the whole body was read and
admitted, the gateway writes a new multipart body itself (its own boundary and part headers) around
the spooled (redacted) file and sends it with an exact Content-Length.

Uploads: a JSONL line can span parts and the part order is only known at ``complete`` (``part_ids``).
So the gateway holds the Upload itself: ``create`` and ``parts`` are answered by the gateway (parts are
spooled on the gateway's disk, nothing goes upstream), and ``complete`` (serialised per upload,
idempotent) scans the concatenation in the given order; only if it is admitted does the gateway create
the Upload upstream (with the size of the *rewritten* file and its own validated metadata), send the
rewritten bytes as parts of at most 64 MB and complete it. A failed upstream part or complete cancels
the remote Upload.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.responses import JSONResponse, Response

from bastion.adapters.openai.records import PROBLEMS, RecordChecker
from bastion.gateway import jsonbody, minted
from bastion.gateway.errors import Refusal
from bastion.gateway.multipart import FormReader, PartInfo
from bastion.gateway.proxy import read_limited
from bastion.gateway.scan import ScanSink, decision_refusal, summary_facts
from bastion.gateway.spool import MultipartBody, Spool
from bastion.gateway.state import Admitted, HeldPart, HeldUpload, StateConflict

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway
    from bastion.gateway.spec import Step

PART_LIMIT = 64 * 1024 * 1024  # OpenAI's per-part maximum
MAX_RESPONSE = 4 * 1024 * 1024
UPLOAD_TTL = 3600  # the Uploads API's one hour
FILE_CONTENT_TYPE = "application/jsonl"
MIME_TYPES = frozenset({"application/jsonl", "application/json", "application/x-ndjson", "text/jsonl", "text/plain"})
_PART_CTYPE = re.compile(r"[a-z]+/[a-z0-9.+-]{1,64}")
_SAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]+")
_EXPIRES_SECONDS = (3600, 2_592_000)


# -- shared checks ----------------------------------------------------------------------------------
def check_purpose(gw: Gateway, purpose: Any) -> str:
    if purpose == "vision":
        raise Refusal(
            403,
            "purpose_not_allowed",
            "uploads with purpose 'vision' are image files, which this gateway cannot scan for personal data",
            param="purpose",
            hint="put images inline (data: URIs) in a fine-tune JSONL file instead",
        )
    if not isinstance(purpose, str) or purpose not in gw.settings.scan_purposes:
        raise Refusal(
            403,
            "purpose_not_allowed",
            f"this gateway accepts uploads with purpose {', '.join(gw.settings.scan_purposes)}; another was sent",
            param="purpose",
            hint="this gateway only forwards data it can scan",
        )
    return purpose


def check_only_purpose(gw: Gateway, purpose: Any, allowed: str, provider: str, others: str) -> None:
    """A provider's upload form: only purpose ``allowed`` is forwarded (``others``: the purposes that are not,
    named in the refusal), and the operator must not have taken it off ``gateway.scan_purposes``."""
    if purpose != allowed:
        raise Refusal(
            403,
            "purpose_not_allowed",
            f"this gateway forwards {provider} uploads with purpose '{allowed}' only ({others} files are not "
            "scanned as training data)",
            param="purpose",
        )
    check_purpose(gw, allowed)


def safe_filename(gw: Gateway, name: Any) -> str:
    """The filename the gateway sends: base name, NFKC, safe characters, scanned (personal data -> digest)."""
    text = name if isinstance(name, str) else ""
    norm = unicodedata.normalize("NFKC", text)
    base = _SAFE_FILENAME.sub("_", norm.replace("\\", "/").rsplit("/", 1)[-1]).strip(" .")[:128] or "upload.jsonl"
    scan = gw.engine.scan_record([text, norm, base], 0)  # the client's name as sent and as it is sent on
    if any(f.action != "allow" for f in scan.findings):
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        return f"upload-{digest}.jsonl"
    return base


def check_expires(anchor: Any, seconds: Any) -> dict[str, Any]:
    if anchor != "created_at":
        raise Refusal(400, "invalid_request", "expires_after[anchor] must be 'created_at'", param="expires_after")
    try:
        secs = int(seconds) if isinstance(seconds, (int, str)) and not isinstance(seconds, bool) else -1
    except ValueError:
        secs = -1
    if isinstance(seconds, str) and not seconds.isdigit():
        secs = -1
    if not _EXPIRES_SECONDS[0] <= secs <= _EXPIRES_SECONDS[1]:
        raise Refusal(
            400,
            "invalid_request",
            f"expires_after[seconds] must be a whole number between {_EXPIRES_SECONDS[0]} and {_EXPIRES_SECONDS[1]}",
            param="expires_after",
        )
    return {"anchor": "created_at", "seconds": secs}


def new_sink(gw: Gateway, purpose: str, spool: Spool) -> ScanSink:
    return records_sink(gw, spool, PROBLEMS.get(purpose))


def records_sink(gw: Gateway, spool: Spool, problem: Callable[[Any], str | None] | None) -> ScanSink:
    """The JSONL scanner writing the rewritten file to ``spool``, each record checked by ``problem`` (the
    provider's record format) and for images (``gateway.remote_images``)."""
    from bastion.policies import JsonlScanner

    scanner = JsonlScanner(gw.engine, source="upload", max_line_bytes=gw.settings.max_line_bytes)
    return ScanSink(scanner, spool, checker=RecordChecker(problem, remote_images=gw.settings.remote_images))


def scanned(gw: Gateway, ex: Exchange, sink: ScanSink, what: str) -> dict[str, Any]:
    facts = summary_facts(sink)
    ex.audit["scan"] = facts
    gw.metrics.bytes_scanned.labels(ex.upstream_name, ex.route.name).inc(facts["input_bytes"])
    gw.metrics.records_scanned.labels(ex.upstream_name, ex.route.name).inc(facts["records"])
    refusal = decision_refusal(facts, what)
    if refusal is not None:
        raise refusal
    gw.check_residency(ex, facts["classification"])
    return facts


async def admit(gw: Gateway, ex: Exchange, facts: dict[str, Any]) -> str:
    """The decision, durable in the audit log before anything is sent upstream."""
    decision = "redact" if facts["scan_decision"] == "redact" else "allow"
    await gw.record(ex, decision, event="decision")
    return decision


def remember(gw: Gateway, ex: Exchange, file_id: Any, facts: dict[str, Any], decision: str, purpose: str) -> None:
    if not isinstance(file_id, str) or not file_id:
        return
    gw.state.admit(
        Admitted(
            upstream=ex.upstream_name,
            ref=file_id,
            client=ex.fingerprint,
            decision=decision,
            classification=facts.get("classification"),
            input_sha256=facts["input_sha256"],
            output_sha256=facts["output_sha256"],
            records=facts["records"],
            policy=gw.policy_name,
            purpose=purpose,
            admitted_at=datetime.now(UTC),
        )
    )


def _json_field(raw: bytes, key: str) -> Any:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc.get(key) if isinstance(doc, dict) else None


def _safe_id(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 128 and value.isprintable() else None


# -- POST /files -----------------------------------------------------------------------------------------
async def files_create(gw: Gateway, ex: Exchange) -> Response:
    settings = gw.settings
    spool = Spool(gw.spool_dir, max_bytes=settings.max_upload_bytes, what="rewritten upload")
    sinks: list[ScanSink] = []
    reader: FormReader

    def open_file(part: PartInfo) -> ScanSink:
        if part.name != "file":
            raise Refusal(400, "invalid_upload", "unexpected file part; only 'file' is accepted", param="file")
        _check_part_headers(part)
        if "purpose" not in reader.fields:
            raise Refusal(
                400,
                "invalid_upload",
                "the form field 'purpose' is missing (it must come before the file part)",
                param="purpose",
            )
        purpose = check_purpose(gw, reader.fields.get("purpose"))
        sink = new_sink(gw, purpose, spool)
        sinks.append(sink)
        return sink

    try:
        reader = FormReader(ex.request.headers.get("content-type"), open_file, check_field=_check_field_part)
        await gw.feed(ex, settings.max_upload_bytes, reader.write)
        await anyio.to_thread.run_sync(reader.finish)
        purpose = reader.fields.get("purpose")
        if purpose is None:
            raise Refusal(400, "invalid_upload", "the form field 'purpose' is missing", param="purpose")
        purpose = check_purpose(gw, purpose)
        fields: list[tuple[str, str]] = [("purpose", purpose)]
        unknown = [n for n in reader.field_order if n not in FILE_FORM_FIELDS]
        if unknown:
            raise Refusal(
                400,
                "invalid_upload",
                "the form has a field the gateway does not forward; accepted: "
                + ", ".join(sorted(FILE_FORM_FIELDS))
                + " and 'file'",
                hint="the gateway forwards only the fields it knows, so no data can travel unscanned",
            )
        if "expires_after[anchor]" in reader.fields or "expires_after[seconds]" in reader.fields:
            exp = check_expires(reader.fields.get("expires_after[anchor]"), reader.fields.get("expires_after[seconds]"))
            fields += [("expires_after[anchor]", exp["anchor"]), ("expires_after[seconds]", str(exp["seconds"]))]
        if not sinks:
            raise Refusal(400, "invalid_upload", "the form has no 'file' part", param="file")
        sink = sinks[0]
        client_name = reader.files[0].filename or ""
        ex.audit["filename_sha256"] = "sha256:" + hashlib.sha256(client_name.encode()).hexdigest()[:16]
        ex.audit["purpose"] = purpose
        filename = await anyio.to_thread.run_sync(safe_filename, gw, client_name)
        facts = scanned(gw, ex, sink, "upload")
        digest = hashlib.sha256(json.dumps([fields, filename, facts["output_sha256"], ex.path]).encode()).hexdigest()

        def run() -> Awaitable[Response]:
            return send_file(gw, ex, facts, spool, fields, filename, purpose, "the file upload", json_id)

        return await gw.once(ex, digest, run)
    finally:
        spool.discard()


def json_id(raw: bytes) -> str | None:
    """The ``id`` of a JSON answer (a file object), when it is a short printable string."""
    return _safe_id(_json_field(raw, "id"))


async def send_file(
    gw: Gateway,
    ex: Exchange,
    facts: dict[str, Any],
    spool: Spool,
    fields: list[tuple[str, str]],
    filename: str,
    purpose: str,
    what: str,
    admitted: Callable[[bytes], str | None],
) -> Response:
    """Send a scanned file upstream in a new multipart body (``fields``, then the ``file`` part from ``spool``)
    and answer the client. On a 2xx answer, the file is admitted under ``admitted(answer)`` (its id); an error
    answer is masked. ``what`` names the call in errors ("the file upload")."""
    decision = await admit(gw, ex, facts)
    body = MultipartBody(fields, "file", filename, FILE_CONTENT_TYPE, spool)
    reply = await gw.send(ex, content=body.aiter(), content_type=body.content_type, content_length=body.content_length)
    raw = await read_limited(reply.response, MAX_RESPONSE, what)
    status = reply.response.status_code
    file_id = admitted(raw) if 200 <= status < 300 else None
    await anyio.to_thread.run_sync(remember, gw, ex, file_id, facts, decision, purpose)
    if status >= 400:
        raw = await anyio.to_thread.run_sync(gw.mask, raw)
    await gw.record(ex, decision, event="upstream_response", status=status, file_id=file_id)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
    return gw.buffered_response(status, raw, reply.response.headers)


async def send_json(
    gw: Gateway, ex: Exchange, body: bytes, decision: str, what: str, object_id: Callable[[bytes], str | None]
) -> Response:
    """Send a scanned JSON request body upstream and answer the client: a 2xx answer is read (bounded; ``what``
    names the call in errors) and the id ``object_id`` reads from it recorded; an error answer is relayed."""
    await gw.record(ex, decision, event="decision")
    reply = await gw.send(ex, content=body, content_type="application/json")
    status = reply.response.status_code
    if 200 <= status < 300:
        answer = await read_limited(reply.response, MAX_RESPONSE, what)
        await gw.record(ex, decision, event="upstream_response", status=status, object_id=object_id(answer))
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
        return gw.buffered_response(status, answer, reply.response.headers)
    return await gw.relay(ex, reply, decision, event="upstream_response", buffer=True)


FILE_FORM_FIELDS = frozenset({"purpose", "expires_after[anchor]", "expires_after[seconds]"})


def _check_part_headers(part: PartInfo) -> None:
    extra = set(part.headers) - {"content-disposition", "content-type"}
    if extra:
        raise Refusal(400, "invalid_upload", "a multipart part has headers other than Content-Disposition/Type")
    ctype = part.content_type
    if ctype is not None and _PART_CTYPE.fullmatch(ctype.split(";", 1)[0].strip().lower()) is None:
        raise Refusal(400, "invalid_upload", "a multipart part has a malformed Content-Type")


def _check_field_part(part: PartInfo) -> None:
    if part.name not in FILE_FORM_FIELDS:
        return  # refused later, by name (after the whole body was read)
    _check_part_headers(part)


# -- Uploads API (held in the state store; parts encrypted at rest) ------------------------------------
def _not_found() -> Refusal:
    return Refusal(
        404,
        "upload_not_found",
        "no pending upload with that id on this gateway for this client",
        hint="create the upload through this gateway (POST /v1/uploads) with the same credentials",
    )


async def _held(gw: Gateway, ex: Exchange) -> HeldUpload:
    upload_id = ex.ids.get("upload_id", "")
    up = await anyio.to_thread.run_sync(gw.state.upload_get, upload_id)
    if up is None or up.upstream != ex.upstream_name or up.client != ex.fingerprint:
        raise _not_found()
    if up.state != "completed" and datetime.now(UTC) > up.expires_at:
        await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)
        raise Refusal(404, "upload_expired", "the upload expired (uploads live one hour)")
    ex.audit["upload_id"] = up.upload_id
    return up


def _object(up: HeldUpload, status: str | None = None) -> dict[str, Any]:
    return {
        "id": up.upload_id,
        "object": "upload",
        "bytes": up.bytes,
        "created_at": int(up.created_at.timestamp()),
        "expires_at": int(up.expires_at.timestamp()),
        "filename": up.filename,
        "purpose": up.purpose,
        "status": status or ("pending" if up.state == "open" else up.state),
        "file": None,
    }


async def _json_object(gw: Gateway, ex: Exchange, allowed: set[str]) -> dict[str, Any]:
    raw = await gw.read_body(ex)
    doc = jsonbody.plain(jsonbody.loads(raw))
    if not isinstance(doc, dict):
        raise Refusal(400, "invalid_request", "the request body must be a JSON object")
    extra = set(doc) - allowed
    if extra:
        raise Refusal(
            400,
            "invalid_request",
            f"{ex.route.name} accepts the fields {', '.join(sorted(allowed))}; another one was sent",
            hint="the gateway forwards only fields it knows, so no data travels unscanned",
        )
    return doc


async def uploads_create(gw: Gateway, ex: Exchange) -> Response:
    now = datetime.now(UTC)
    await anyio.to_thread.run_sync(gw.state.expire, now)
    body = await _json_object(gw, ex, {"bytes", "filename", "mime_type", "purpose", "expires_after"})
    size = body.get("bytes")
    if not isinstance(size, int) or isinstance(size, bool):
        raise Refusal(400, "invalid_request", "'bytes' is required (the size of the file)", param="bytes")
    if not isinstance(body.get("filename"), str):
        raise Refusal(400, "invalid_request", "'filename' is required", param="filename")
    mime = body.get("mime_type")
    if mime not in MIME_TYPES:
        raise Refusal(
            400,
            "invalid_request",
            f"'mime_type' must be one of {', '.join(sorted(MIME_TYPES))} (the gateway scans JSONL)",
            param="mime_type",
        )
    purpose = check_purpose(gw, body.get("purpose"))
    if not 0 < size <= gw.settings.max_upload_bytes:
        raise Refusal(
            413,
            "upload_too_large",
            f"'bytes' must be between 1 and this gateway's limit of {gw.settings.max_upload_bytes}",
            param="bytes",
        )
    exp = body.get("expires_after")
    meta: dict[str, Any] = {}
    if exp is not None:
        if not isinstance(exp, dict) or set(exp) - {"anchor", "seconds"}:
            raise Refusal(400, "invalid_request", "'expires_after' must be {anchor, seconds}", param="expires_after")
        meta["expires_after"] = check_expires(exp.get("anchor"), exp.get("seconds"))
    filename = await anyio.to_thread.run_sync(safe_filename, gw, body["filename"])
    up = HeldUpload(
        upload_id=minted.random_id("upload_bst", 24),
        upstream=ex.upstream_name,
        client=ex.fingerprint,
        purpose=purpose,
        filename=filename,
        mime_type=str(mime),
        bytes=size,
        created_at=now,
        expires_at=now + timedelta(seconds=UPLOAD_TTL),
        meta=meta,
    )
    await anyio.to_thread.run_sync(gw.state.upload_create, up)
    ex.audit.update(upload_id=up.upload_id, declared_bytes=up.bytes, purpose=purpose)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_opened")
    return JSONResponse(_object(up))


async def uploads_part(gw: Gateway, ex: Exchange) -> Response:
    up = await _held(gw, ex)
    if up.state != "open":
        raise Refusal(409, "upload_not_pending", f"upload {up.upload_id} is {up.state}")
    held = sum(p.size for p in await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id))
    limit = min(PART_LIMIT, up.bytes - held)
    writer = gw.state.parts.writer()
    got: list[bool] = []
    size = 0

    class _Sink:
        def write(self, data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size > limit:
                raise Refusal(
                    413,
                    "upload_too_large",
                    "the part is larger than 64 MB or than what is left of the upload's declared bytes",
                )
            writer.write(data)

        def close(self) -> None:
            pass

    def open_file(part: PartInfo) -> _Sink:
        if part.name != "data":
            raise Refusal(400, "invalid_upload", "unexpected file part; expected 'data'", param="data")
        _check_part_headers(part)
        got.append(True)
        return _Sink()

    try:
        reader = FormReader(ex.request.headers.get("content-type"), open_file)
        await gw.feed(ex, PART_LIMIT + 64 * 1024, reader.write)
        await anyio.to_thread.run_sync(reader.finish)
        if not got:
            raise Refusal(400, "invalid_upload", "the form has no 'data' part", param="data")
        if reader.fields:
            raise Refusal(400, "invalid_upload", "an upload part carries only the 'data' file part")
        blob = await anyio.to_thread.run_sync(writer.commit)
    except BaseException:
        writer.discard()
        raise
    part = HeldPart(minted.random_id("part_bst", 24), blob.size, blob.sha256, blob.handle, datetime.now(UTC))
    try:
        await anyio.to_thread.run_sync(gw.state.upload_add_part, up.upload_id, part)
    except StateConflict:
        raise Refusal(409, "upload_not_pending", f"upload {up.upload_id} no longer takes parts") from None
    ex.audit.update(part_id=part.part_id, part_bytes=part.size, part_sha256=part.sha256)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_part_held")
    return JSONResponse(
        {"id": part.part_id, "object": "upload.part", "created_at": int(time.time()), "upload_id": up.upload_id}
    )


async def uploads_cancel(gw: Gateway, ex: Exchange) -> Response:
    up = await _held(gw, ex)
    if up.state != "open":
        raise Refusal(409, "upload_not_pending", f"upload {up.upload_id} is {up.state}")
    await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "cancel").inc()
    await gw.record(ex, "cancel", event="upload_cancelled")
    return JSONResponse(_object(up, "cancelled"))


_PART_ID = re.compile(minted.shape("part_bst", 24))


async def uploads_complete(gw: Gateway, ex: Exchange) -> Response:
    up = await _held(gw, ex)
    body = await _json_object(gw, ex, {"part_ids", "md5"})
    part_ids = body.get("part_ids")
    if not isinstance(part_ids, list) or not part_ids or not all(isinstance(p, str) for p in part_ids):
        raise Refusal(400, "invalid_request", "'part_ids' must be a non-empty list of part ids", param="part_ids")
    md5 = body.get("md5")
    if md5 is not None and (not isinstance(md5, str) or re.fullmatch(r"[0-9a-fA-F]{32}", md5) is None):
        raise Refusal(400, "invalid_request", "'md5' must be 32 hex digits", param="md5")
    busy = Refusal(
        409,
        "upload_in_progress",
        f"upload {up.upload_id} is being completed by another request",
        hint="wait for it; completing again afterwards returns the same result",
    )
    return await complete_once(gw, ex, up.upload_id, lambda held: _complete_held(gw, ex, held, part_ids, md5), busy)


async def complete_once(
    gw: Gateway,
    ex: Exchange,
    upload_id: str,
    complete: Callable[[HeldUpload], Awaitable[Response]],
    busy: Refusal,
    *,
    media_type: str = "application/json",
    replay_audit: str | None = None,
) -> Response:
    """Complete a held upload once (serialised per upload in the state store): ``complete`` runs for the first
    request; a completed upload answers its stored result again (a replay, its upstream id put in the audit
    entry under ``replay_audit`` when given); while another request completes it, ``busy`` is raised."""
    try:
        async with gw.state.aupload_completing(upload_id) as c:
            if c.completed:
                assert c.result is not None
                if replay_audit is not None:
                    ex.audit[replay_audit] = c.upstream_upload_id
                await gw.record(ex, "replay", event="upload_complete_replayed", status=200)
                return Response(c.result, status_code=200, media_type=media_type)
            return await complete(c.upload)
    except StateConflict:
        raise busy from None


async def _complete_held(gw: Gateway, ex: Exchange, up: HeldUpload, part_ids: list[str], md5: str | None) -> Response:
    parts = {p.part_id: p for p in await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id)}
    if any(_PART_ID.fullmatch(p) is None or p not in parts for p in part_ids) or len(set(part_ids)) != len(part_ids):
        raise Refusal(
            400,
            "invalid_request",
            f"'part_ids' must list parts of upload {up.upload_id} once each (ids as this gateway returned them)",
            param="part_ids",
        )
    total = sum(parts[p].size for p in part_ids)
    if total != up.bytes:
        raise Refusal(
            400,
            "invalid_request",
            f"the parts add up to {total} bytes but the upload was created with bytes={up.bytes}",
            param="part_ids",
        )
    out = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten upload")
    try:
        sink = new_sink(gw, up.purpose, out)
        digest = hashlib.md5(usedforsecurity=False)

        def scan_all() -> None:
            for pid in part_ids:
                for block in gw.state.parts.read(parts[pid].blob):
                    digest.update(block)
                    sink.write(block)
            sink.close()

        await anyio.to_thread.run_sync(scan_all)
        if md5 is not None and md5.lower() != digest.hexdigest():
            raise Refusal(400, "checksum_mismatch", "the parts' md5 does not match 'md5'", param="md5")
        facts = scanned(gw, ex, sink, "upload")
        decision = await admit(gw, ex, facts)
        status, raw, headers, remote_id = await _send_upload(gw, ex, up, out, facts, decision)
        if 200 <= status < 300:
            await anyio.to_thread.run_sync(gw.state.upload_set_result, up.upload_id, raw, remote_id)
        return gw.buffered_response(status, raw, headers)
    finally:
        out.discard()


async def _send_upload(
    gw: Gateway, ex: Exchange, up: HeldUpload, out: Spool, facts: dict[str, Any], decision: str
) -> tuple[int, bytes, list[tuple[str, str]], str | None]:
    create: dict[str, Any] = {
        "bytes": out.size,
        "filename": up.filename,
        "mime_type": up.mime_type,
        "purpose": up.purpose,
    }
    if up.meta.get("expires_after") is not None:
        create["expires_after"] = up.meta["expires_after"]
    prefix = ex.route.path[: -len("/uploads/{upload_id}/complete")]  # "/v1" (or "/openai/v1", "/openai")

    async def call_json(path: str, payload: dict[str, Any]) -> tuple[int, bytes, list[tuple[str, str]]]:
        reply = await gw.send(ex, path=path, content=json.dumps(payload).encode(), content_type="application/json")
        raw = await read_limited(reply.response, MAX_RESPONSE, "an upload call")
        return reply.response.status_code, raw, list(reply.response.headers.multi_items())

    async def cancel_remote(remote_id: str, stage: str, status: int) -> None:
        try:
            await call_json(f"{prefix}/uploads/{remote_id}/cancel", {})
            cancelled = True
        except Refusal:
            cancelled = False
        await gw.record(
            ex,
            decision,
            event="upstream_response",
            status=status,
            stage=stage,
            upstream_upload_id=remote_id,
            remote_upload_cancelled=cancelled,
        )

    status, raw, headers = await call_json(f"{prefix}/uploads", create)
    remote_id = _safe_id(_json_field(raw, "id")) if 200 <= status < 300 else None
    if remote_id is None or re.fullmatch(r"upload_[A-Za-z0-9]{1,96}", remote_id) is None:
        await gw.record(ex, decision, event="upstream_response", status=status, stage="create")
        return status, await anyio.to_thread.run_sync(gw.mask, raw), headers, None
    remote_parts: list[str] = []
    try:
        for offset in range(0, out.size, PART_LIMIT):
            length = min(PART_LIMIT, out.size - offset)
            body = MultipartBody([], "data", "data", "application/octet-stream", out, offset=offset, length=length)
            reply = await gw.send(
                ex,
                path=f"{prefix}/uploads/{remote_id}/parts",
                content=body.aiter(),
                content_type=body.content_type,
                content_length=body.content_length,
            )
            praw = await read_limited(reply.response, MAX_RESPONSE, "an upload part")
            part_id = _safe_id(_json_field(praw, "id")) if 200 <= reply.response.status_code < 300 else None
            if part_id is None:
                await cancel_remote(remote_id, "part", reply.response.status_code)
                return reply.response.status_code, await anyio.to_thread.run_sync(gw.mask, praw), headers, None
            remote_parts.append(part_id)
        md5 = await anyio.to_thread.run_sync(_md5_file, out)
        status, raw, headers = await call_json(
            f"{prefix}/uploads/{remote_id}/complete", {"part_ids": remote_parts, "md5": md5}
        )
    except Refusal:
        await cancel_remote(remote_id, "transport", 0)
        raise
    if not 200 <= status < 300:
        await cancel_remote(remote_id, "complete", status)
        return status, await anyio.to_thread.run_sync(gw.mask, raw), headers, None
    file_obj = _json_field(raw, "file")
    file_id = _safe_id(file_obj.get("id")) if isinstance(file_obj, dict) else None
    await anyio.to_thread.run_sync(remember, gw, ex, file_id, facts, decision, up.purpose)
    await gw.record(
        ex, decision, event="upstream_response", status=status, upstream_upload_id=remote_id, file_id=file_id
    )
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
    return status, raw, headers, remote_id


def _md5_file(spool: Spool) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    for block in spool.blocks():
        digest.update(block)
    return digest.hexdigest()


STEPS: dict[str, Step] = {
    "files.create": files_create,
    "uploads.create": uploads_create,
    "uploads.parts": uploads_part,
    "uploads.complete": uploads_complete,
    "uploads.cancel": uploads_cancel,
}
