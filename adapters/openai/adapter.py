"""OpenAI: ``POST /v1/files``, the multi-part Uploads API and ``POST /v1/fine_tuning/jobs``.

Files: the multipart body is parsed as it streams; the ``file`` part goes through the JSONL scanner
into a spool; after the whole body was read and admitted, the spooled (redacted) file is re-framed
as a new multipart body with an exact Content-Length and sent upstream.

Uploads: a JSONL line can span parts and the part order is only known at ``complete`` (``part_ids``).
So the gateway holds the Upload itself: ``create`` and ``parts`` are answered by the gateway (parts are
spooled on the gateway's disk, nothing goes upstream), and ``complete`` scans the concatenation in the
given order; only if it is admitted does the gateway create the Upload upstream (with the size of the
*rewritten* file), send the rewritten bytes as parts of at most 64 MB and complete it. Nothing
unscanned ever reaches the upstream, and redaction (which changes the size) stays consistent with
the declared ``bytes``. The ids the client sees before ``complete`` are the gateway's (``upload_bst…``,
``part_bst…``); ``complete`` returns the upstream's Upload object (its id, and its ``file.id``).

Fine-tuning jobs: ``training_file`` / ``validation_file`` must be files this gateway scanned and admitted
for the same upstream (the persistent file map), and the upstream must pass the residency policy.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.responses import JSONResponse, Response

from bastion.adapters.base import Adapter
from bastion.adapters.openai.records import FORMATS, RecordChecker
from bastion.adapters.openai.routes import DEFAULT_ALLOWED, ROUTES
from bastion.gateway.errors import Refusal
from bastion.gateway.multipart import FormReader, PartInfo
from bastion.gateway.proxy import read_limited
from bastion.gateway.scan import ScanSink, decision_refusal, summary_facts
from bastion.gateway.spool import MultipartBody, Spool

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

PART_LIMIT = 64 * 1024 * 1024  # OpenAI's per-part maximum
MAX_RESPONSE = 4 * 1024 * 1024
UPLOAD_TTL = 3600
# text fields of POST /v1/files (openai.types.FileCreateParams); anything else is refused, not forwarded
FILE_FORM_FIELDS = frozenset({"purpose", "expires_after[anchor]", "expires_after[seconds]"})


@dataclass
class PendingUpload:
    id: str
    upstream: str
    client: str
    bytes: int
    filename: str
    mime_type: str
    purpose: str
    expires_after: Any
    created_at: int
    parts: dict[str, Spool] = field(default_factory=dict)
    status: str = "pending"

    def as_object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "upload",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.created_at + UPLOAD_TTL,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status,
            "file": None,
        }

    def discard(self) -> None:
        for spool in self.parts.values():
            spool.discard()
        self.parts.clear()


class OpenAIAdapter(Adapter):
    name = "openai"
    routes = ROUTES
    default_allowed_routes = DEFAULT_ALLOWED
    record_formats = FORMATS

    def __init__(self) -> None:
        self.uploads: dict[str, PendingUpload] = {}

    # -- errors -------------------------------------------------------------------------------------
    def error_body(self, refusal: Refusal) -> dict[str, Any]:
        return {
            "error": {
                "message": refusal.client_message,
                "type": "server_error" if refusal.status >= 500 else "invalid_request_error",
                "param": refusal.param,
                "code": refusal.kind,
            }
        }

    # -- dispatch -------------------------------------------------------------------------------------
    async def handle(self, gateway: Gateway, exchange: Exchange) -> Response:
        name = exchange.route.name
        if name == "files.create":
            return await self.files_create(gateway, exchange)
        if name == "uploads.create":
            return await self.uploads_create(gateway, exchange)
        if name == "uploads.parts.create":
            return await self.uploads_part(gateway, exchange)
        if name == "uploads.complete":
            return await self.uploads_complete(gateway, exchange)
        if name == "uploads.cancel":
            return await self.uploads_cancel(gateway, exchange)
        if name == "fine_tuning.jobs.create":
            return await self.jobs_create(gateway, exchange)
        raise Refusal(403, "route_not_allowed", f"route {name} has no training-data handler")  # pragma: no cover

    # -- helpers --------------------------------------------------------------------------------------
    @staticmethod
    def _check_purpose(gw: Gateway, purpose: str) -> None:
        if purpose not in gw.settings.scan_purposes:
            raise Refusal(
                403,
                "purpose_not_allowed",
                f"uploads with purpose {purpose!r} are not accepted by this gateway "
                f"(accepted: {', '.join(gw.settings.scan_purposes)})",
                param="purpose",
                hint="this gateway only forwards training data it can scan",
            )

    @staticmethod
    def _new_sink(gw: Gateway, source: str, spool: Spool) -> ScanSink:
        from bastion.policies import JsonlScanner

        scanner = JsonlScanner(gw.engine, source=source, max_line_bytes=gw.settings.max_line_bytes)
        return ScanSink(scanner, spool, checker=RecordChecker())

    def _scanned(self, gw: Gateway, ex: Exchange, sink: ScanSink, what: str) -> dict[str, Any]:
        facts = summary_facts(sink)
        ex.audit["scan"] = facts
        gw.metrics.bytes_scanned.labels(ex.upstream_name, ex.route.name).inc(facts["input_bytes"])
        gw.metrics.records_scanned.labels(ex.upstream_name, ex.route.name).inc(facts["records"])
        refusal = decision_refusal(facts, what)
        if refusal is not None:
            raise refusal
        gw.check_residency(ex, facts["classification"])
        return facts

    async def _admit(self, gw: Gateway, ex: Exchange, facts: dict[str, Any]) -> str:
        decision = "redact" if facts["scan_decision"] == "redact" else "allow"
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
        await gw.record(ex, decision, event="decision")  # durable before anything is sent upstream
        return decision

    def _remember(self, gw: Gateway, ex: Exchange, file_id: str | None, facts: dict[str, Any], decision: str) -> None:
        if not file_id:
            return
        gw.filemap.put(
            ex.upstream_name,
            file_id,
            decision=decision,
            classification=facts.get("classification"),
            input_sha256=facts["input_sha256"],
            output_sha256=facts["output_sha256"],
            records=facts["records"],
            policy=gw.policy_name,
        )

    # -- POST /v1/files -------------------------------------------------------------------------------
    async def files_create(self, gw: Gateway, ex: Exchange) -> Response:
        settings = gw.settings
        spool = Spool(settings.spool_dir, max_bytes=settings.max_upload_bytes, what="rewritten upload")
        sinks: list[ScanSink] = []
        reader: FormReader

        def open_file(part: PartInfo) -> ScanSink:
            if part.name != "file":
                raise Refusal(
                    400,
                    "invalid_upload",
                    f"unexpected file part {part.name!r}; only 'file' is accepted",
                    param=part.name,
                )
            purpose = reader.fields.get("purpose")
            if purpose is not None:
                self._check_purpose(gw, purpose)
            sink = self._new_sink(gw, "upload", spool)
            sinks.append(sink)
            return sink

        try:
            reader = FormReader(ex.request.headers.get("content-type"), open_file)
            await gw.feed(ex, settings.max_upload_bytes, reader.write)
            await anyio.to_thread.run_sync(reader.finish)
            purpose = reader.fields.get("purpose")
            if purpose is None:
                raise Refusal(400, "invalid_upload", "the form field 'purpose' is missing", param="purpose")
            self._check_purpose(gw, purpose)
            unknown = [n for n in reader.field_order if n not in FILE_FORM_FIELDS]
            if unknown:
                raise Refusal(
                    400,
                    "invalid_upload",
                    f"unexpected form field {unknown[0]!r}; accepted: {', '.join(sorted(FILE_FORM_FIELDS))} and 'file'",
                    param=unknown[0],
                    hint="the gateway forwards only the fields it knows, so no data can travel unscanned",
                )
            if not sinks:
                raise Refusal(400, "invalid_upload", "the form has no 'file' part", param="file")
            sink = sinks[0]
            ex.audit["filename_sha256"] = hashlib.sha256((reader.files[0].filename or "").encode()).hexdigest()[:16]
            facts = self._scanned(gw, ex, sink, "upload")
            decision = await self._admit(gw, ex, facts)
            part = reader.files[0]
            body = MultipartBody(
                [(n, reader.fields[n]) for n in reader.field_order],
                "file",
                part.filename or "upload.jsonl",
                part.content_type or "application/jsonl",
                spool,
            )
            headers = gw.upstream_headers(ex, drop=("content-type",))
            headers.append(("content-type", body.content_type))
            reply = await ex.upstream.send(
                "POST",
                ex.path,
                query=ex.request.url.query,
                headers=headers,
                content=body.aiter(),
                content_length=body.content_length,
                route=ex.route.name,
            )
            gw.metrics.upstream_latency.labels(ex.upstream_name, ex.route.name).observe(reply.latency)
            raw = await read_limited(reply.response, MAX_RESPONSE, "the file upload")
            status = reply.response.status_code
            file_id = _json_field(raw, "id") if 200 <= status < 300 else None
            await anyio.to_thread.run_sync(self._remember, gw, ex, file_id, facts, decision)
            await gw.record(ex, decision, wait=False, event="upstream_response", status=status, file_id=file_id)
            return gw.buffered_response(status, raw, reply.response.headers)
        finally:
            spool.discard()

    # -- Uploads API ------------------------------------------------------------------------------------
    def _pending(self, ex: Exchange) -> PendingUpload:
        upload_id = ex.route.params.get("upload_id", "")
        up = self.uploads.get(upload_id)
        if up is None or up.upstream != ex.upstream_name or up.client != ex.fingerprint:
            raise Refusal(
                404,
                "upload_not_found",
                f"no pending upload {upload_id!r} on this gateway for this client",
                hint="create the upload through this gateway (POST /v1/uploads) with the same credentials",
            )
        if time.time() > up.created_at + UPLOAD_TTL:
            up.discard()
            self.uploads.pop(up.id, None)
            raise Refusal(404, "upload_expired", f"upload {up.id!r} expired (uploads live one hour)")
        ex.audit["upload_id"] = up.id
        return up

    def _sweep(self) -> None:
        """Drop uploads past their hour (their held parts are deleted from the spool)."""
        now = time.time()
        for up in [u for u in self.uploads.values() if now > u.created_at + UPLOAD_TTL]:
            up.discard()
            self.uploads.pop(up.id, None)

    async def uploads_create(self, gw: Gateway, ex: Exchange) -> Response:
        self._sweep()
        body = await gw.read_json(ex)
        if not isinstance(body, dict):
            raise Refusal(400, "invalid_request", "the request body must be a JSON object")
        for key, typ in (("bytes", int), ("filename", str), ("mime_type", str), ("purpose", str)):
            if not isinstance(body.get(key), typ) or isinstance(body.get(key), bool):
                raise Refusal(400, "invalid_request", f"'{key}' is required ({typ.__name__})", param=key)
        self._check_purpose(gw, body["purpose"])
        if not 0 < body["bytes"] <= gw.settings.max_upload_bytes:
            raise Refusal(
                413,
                "upload_too_large",
                f"'bytes' must be between 1 and this gateway's limit of {gw.settings.max_upload_bytes}",
                param="bytes",
            )
        up = PendingUpload(
            id="upload_bst" + secrets.token_hex(12),
            upstream=ex.upstream_name,
            client=ex.fingerprint,
            bytes=body["bytes"],
            filename=body["filename"],
            mime_type=body["mime_type"],
            purpose=body["purpose"],
            expires_after=body.get("expires_after"),
            created_at=int(time.time()),
        )
        self.uploads[up.id] = up
        ex.audit.update(upload_id=up.id, declared_bytes=up.bytes)
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
        await gw.record(ex, "hold", event="upload_opened")
        return JSONResponse(up.as_object())

    async def uploads_part(self, gw: Gateway, ex: Exchange) -> Response:
        up = self._pending(ex)
        held = sum(s.size for s in up.parts.values())
        spool = Spool(gw.settings.spool_dir, max_bytes=min(PART_LIMIT, up.bytes - held), what="upload part")
        got: list[Spool] = []

        class _Raw:
            def write(self, data: bytes) -> None:
                spool.write(data)

            def close(self) -> None:
                spool.close_write()

        def open_file(part: PartInfo) -> _Raw:
            if part.name != "data":
                raise Refusal(
                    400, "invalid_upload", f"unexpected file part {part.name!r}; expected 'data'", param="data"
                )
            got.append(spool)
            return _Raw()

        try:
            reader = FormReader(ex.request.headers.get("content-type"), open_file)
            await gw.feed(ex, PART_LIMIT, reader.write)
            await anyio.to_thread.run_sync(reader.finish)
            if not got:
                raise Refusal(400, "invalid_upload", "the form has no 'data' part", param="data")
        except BaseException:
            spool.discard()
            raise
        if up.status != "pending" or up.id not in self.uploads:
            spool.discard()
            raise Refusal(409, "upload_not_pending", f"upload {up.id!r} is {up.status}")
        part_id = "part_bst" + secrets.token_hex(12)
        up.parts[part_id] = spool
        ex.audit.update(part_id=part_id, part_bytes=spool.size, part_sha256=spool.sha256)
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
        await gw.record(ex, "hold", event="upload_part_held")
        return JSONResponse(
            {"id": part_id, "object": "upload.part", "created_at": int(time.time()), "upload_id": up.id}
        )

    async def uploads_cancel(self, gw: Gateway, ex: Exchange) -> Response:
        up = self._pending(ex)
        up.status = "cancelled"
        up.discard()
        self.uploads.pop(up.id, None)
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "cancel").inc()
        await gw.record(ex, "cancel", event="upload_cancelled")
        return JSONResponse(up.as_object())

    async def uploads_complete(self, gw: Gateway, ex: Exchange) -> Response:
        up = self._pending(ex)
        body = await gw.read_json(ex)
        part_ids = body.get("part_ids") if isinstance(body, dict) else None
        if not isinstance(part_ids, list) or not part_ids or not all(isinstance(p, str) for p in part_ids):
            raise Refusal(400, "invalid_request", "'part_ids' must be a non-empty list of part ids", param="part_ids")
        unknown = [p for p in part_ids if p not in up.parts]
        if unknown or len(set(part_ids)) != len(part_ids):
            raise Refusal(
                400,
                "invalid_request",
                f"'part_ids' must list parts of upload {up.id!r} once each; "
                f"unknown or repeated: {unknown[:5] or 'repeats'}",
                param="part_ids",
            )
        total = sum(up.parts[p].size for p in part_ids)
        if total != up.bytes:
            raise Refusal(
                400,
                "invalid_request",
                f"the parts add up to {total} bytes but the upload was created with bytes={up.bytes}",
                param="part_ids",
            )
        md5 = body.get("md5")
        up.status = "completing"
        out = Spool(gw.settings.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten upload")
        try:
            sink = self._new_sink(gw, "upload", out)
            digest = hashlib.md5(usedforsecurity=False)

            def scan_all() -> None:
                for pid in part_ids:
                    spool = up.parts[pid]
                    spool.close_write()
                    with open(spool.path, "rb") as fh:
                        while block := fh.read(1024 * 1024):
                            digest.update(block)
                            sink.write(block)
                sink.close()

            await anyio.to_thread.run_sync(scan_all)
            if isinstance(md5, str) and md5 and md5.lower() != digest.hexdigest():
                raise Refusal(400, "checksum_mismatch", "the parts' md5 does not match 'md5'", param="md5")
            ex.audit["upload_id"] = up.id
            facts = self._scanned(gw, ex, sink, "upload")
            decision = await self._admit(gw, ex, facts)
            response = await self._send_upload(gw, ex, up, out, facts, decision)
            return response
        except BaseException:
            if up.id in self.uploads:
                up.status = "pending"
            raise
        finally:
            out.discard()

    async def _send_upload(
        self, gw: Gateway, ex: Exchange, up: PendingUpload, out: Spool, facts: dict[str, Any], decision: str
    ) -> Response:
        base_headers = gw.upstream_headers(ex, drop=("content-type",))
        create: dict[str, Any] = {
            "bytes": out.size,
            "filename": up.filename,
            "mime_type": up.mime_type,
            "purpose": up.purpose,
        }
        if up.expires_after is not None:
            create["expires_after"] = up.expires_after
        prefix = ex.path[: -len(f"/uploads/{up.id}/complete")]  # "/v1"

        async def call_json(path: str, payload: dict[str, Any]) -> tuple[int, bytes, Any]:
            reply = await ex.upstream.send(
                "POST",
                path,
                headers=[*base_headers, ("content-type", "application/json")],
                content=json.dumps(payload).encode(),
                route=ex.route.name,
            )
            gw.metrics.upstream_latency.labels(ex.upstream_name, ex.route.name).observe(reply.latency)
            raw = await read_limited(reply.response, MAX_RESPONSE, path)
            return reply.response.status_code, raw, reply.response.headers

        status, raw, headers = await call_json(f"{prefix}/uploads", create)
        remote_id = _json_field(raw, "id") if 200 <= status < 300 else None
        if remote_id is None:
            await gw.record(ex, decision, wait=False, event="upstream_response", status=status, stage="create")
            return gw.buffered_response(status, raw, headers)
        remote_parts: list[str] = []
        for offset in range(0, out.size, PART_LIMIT):
            length = min(PART_LIMIT, out.size - offset)
            body = MultipartBody([], "data", "data", "application/octet-stream", out, offset=offset, length=length)
            reply = await ex.upstream.send(
                "POST",
                f"{prefix}/uploads/{remote_id}/parts",
                headers=[*base_headers, ("content-type", body.content_type)],
                content=body.aiter(),
                content_length=body.content_length,
                route=ex.route.name,
            )
            raw = await read_limited(reply.response, MAX_RESPONSE, "an upload part")
            part_id = _json_field(raw, "id") if 200 <= reply.response.status_code < 300 else None
            if part_id is None:
                await call_json(f"{prefix}/uploads/{remote_id}/cancel", {})
                await gw.record(
                    ex, decision, wait=False, event="upstream_response", status=reply.response.status_code, stage="part"
                )
                return gw.buffered_response(reply.response.status_code, raw, reply.response.headers)
            remote_parts.append(part_id)
        md5 = await anyio.to_thread.run_sync(_md5_file, out)
        status, raw, headers = await call_json(
            f"{prefix}/uploads/{remote_id}/complete", {"part_ids": remote_parts, "md5": md5}
        )
        file_id = None
        if 200 <= status < 300:
            file_obj = _json_field(raw, "file")
            file_id = file_obj.get("id") if isinstance(file_obj, dict) else None
            await anyio.to_thread.run_sync(self._remember, gw, ex, file_id, facts, decision)
            up.discard()
            self.uploads.pop(up.id, None)
            up.status = "completed"
        await gw.record(
            ex,
            decision,
            wait=False,
            event="upstream_response",
            status=status,
            upstream_upload_id=remote_id,
            file_id=file_id,
        )
        return gw.buffered_response(status, raw, headers)

    # -- POST /v1/fine_tuning/jobs ------------------------------------------------------------------------
    async def jobs_create(self, gw: Gateway, ex: Exchange) -> Response:
        body = await gw.read_json(ex)
        if not isinstance(body, dict):
            raise Refusal(400, "invalid_request", "the request body must be a JSON object")
        refs: list[tuple[str, str]] = []
        for key in ("training_file", "validation_file"):
            value = body.get(key)
            if value is None and key == "validation_file":
                continue
            if not isinstance(value, str) or not value:
                raise Refusal(400, "invalid_request", f"'{key}' must be a file id", param=key)
            refs.append((key, value))
        files: dict[str, Any] = {}
        for key, file_id in refs:
            admitted = await anyio.to_thread.run_sync(gw.filemap.get, ex.upstream_name, file_id)
            if admitted is None or admitted.decision not in ("allow", "redact"):
                raise Refusal(
                    403,
                    "unscanned_file",
                    f"{key} {file_id!r} was not uploaded through this gateway for upstream {ex.upstream_name!r}, "
                    "so it was never scanned",
                    param=key,
                    hint="upload the file through the gateway (files.create or uploads) and use the id it returns",
                )
            files[key] = {
                "file_id": file_id,
                "decision": admitted.decision,
                "input_sha256": admitted.input_sha256,
                "output_sha256": admitted.output_sha256,
                "records": admitted.records,
                "classification": admitted.classification,
            }
        ex.audit["files"] = files
        ex.audit["model"] = str(body.get("model"))[:200]
        method = body.get("method")
        ex.audit["method"] = method.get("type") if isinstance(method, dict) else None
        for info in files.values():
            gw.check_residency(ex, info["classification"])
        # the job itself (suffix, metadata, grader prompts/references) goes through the same policy
        scan = await anyio.to_thread.run_sync(gw.engine.scan_record, body, 1)
        if scan.findings:
            ex.audit["job_findings"] = sorted({f"{f.entity}:{f.action}" for f in scan.findings})
        if scan.action == "block":
            raise Refusal(
                403,
                "policy_block",
                "the fine-tuning job request was blocked by the gateway's data policy",
                rule_ids=sorted({f.rule_id for f in scan.findings if f.action == "block"}),
                entity_types=[f.entity for f in scan.findings if f.action == "block"],
                hint="remove personal data from the job's suffix, metadata and grader",
            )
        body = scan.record
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "allow").inc()
        await gw.record(ex, "allow", event="decision")
        headers = gw.upstream_headers(ex, drop=("content-type",))
        headers.append(("content-type", "application/json"))
        reply = await ex.upstream.send(
            "POST",
            ex.path,
            query=ex.request.url.query,
            headers=headers,
            content=json.dumps(body).encode(),
            route=ex.route.name,
        )
        gw.metrics.upstream_latency.labels(ex.upstream_name, ex.route.name).observe(reply.latency)
        raw = await read_limited(reply.response, MAX_RESPONSE, "the fine-tuning job")
        status = reply.response.status_code
        job_id = _json_field(raw, "id") if 200 <= status < 300 else None
        await gw.record(ex, "allow", wait=False, event="upstream_response", status=status, job_id=job_id)
        return gw.buffered_response(status, raw, reply.response.headers)


def _json_field(raw: bytes, key: str) -> Any:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc.get(key) if isinstance(doc, dict) else None


def _md5_file(spool: Spool) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(spool.path, "rb") as fh:
        while block := fh.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()
