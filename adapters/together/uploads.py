"""Together file uploads through the gateway: the redirect flow rewritten, and the direct form upload.

Together's SDK uploads in three calls: ``POST /v1/files`` (form fields only) answers ``302`` with a
presigned object-store URL in ``Location`` and the new file's id in ``X-Together-File-Id``; the SDK ``PUT``s
the bytes to that URL (without its API key: the URL is the credential) and then calls
``POST /v1/files/{id}/preprocess``. A proxy on the API host would never see the bytes. So the gateway
(see :mod:`bastion.gateway.presigned`):

1. ``POST /v1/files``: checks the fields and answers the 302 itself, with an upload URL on the gateway
   (a one-time capability) and a gateway-made id (``bastion-upload-<hex>``); nothing goes upstream;
2. ``PUT`` to that URL: scans the bytes (Together's record formats checked), refuses a blocked file (still
   nothing upstream) and holds the scanned (redacted) bytes encrypted in the state store;
3. ``POST /v1/files/bastion-upload-…/preprocess`` (the client's credential is back): only now does the
   gateway call Together - ``POST /v1/files`` with its own fields (sanitised name, the checksum of the
   bytes it sends), ``PUT`` of the scanned bytes to the presigned URL Together answers (its host checked,
   never logged), ``POST /v1/files/{real id}/preprocess`` - and answers with Together's file object
   (its real id, admitted for this client). A replayed call returns the same answer.

``POST /v1/files/upload`` (the documented direct multipart form) is scanned and re-framed like any form
upload. The multipart flow for files over 5 GB (``/v1/files/multipart/*``, presigned part URLs) is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.responses import Response

from bastion.adapters.openai import steps
from bastion.adapters.together.records import record_problem
from bastion.gateway import minted, presigned
from bastion.gateway.errors import Refusal
from bastion.gateway.multipart import FormReader, PartInfo
from bastion.gateway.proxy import read_limited
from bastion.gateway.scan import ScanSink
from bastion.gateway.spool import Spool
from bastion.gateway.state import HeldPart, HeldUpload, StateConflict

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

PURPOSE = "fine-tune"  # eval, batch-api and calibration files are not training data this gateway scans
FILE_TYPE = "jsonl"  # csv and parquet cannot be scanned record by record
HELD_PREFIX = "bastion-upload-"
HELD_ID = re.compile(minted.shape(HELD_PREFIX, 24))
SIG = presigned.TICKET
UPLOAD_TTL = 3600
MAX_RESPONSE = 4 * 1024 * 1024
#: object stores Together hands out upload URLs on (its SDK says S3 part rules apply; the host itself is
#: not documented): S3 virtual-hosted and path-style hosts. Others: upstreams.<name>.hosts.uploads
UPLOAD_HOSTS = (
    r"[a-z0-9][a-z0-9.-]{0,62}\.s3[.-]([a-z0-9-]+\.)?amazonaws\.com",
    r"s3[.-]([a-z0-9-]+\.)?amazonaws\.com",
)
FORM_FIELDS = frozenset({"purpose", "file_name", "file_type", "checksum"})
_CHECKSUM = re.compile(r"[0-9a-f]{64}")
_FILE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,127}")


# -- shared checks -------------------------------------------------------------------------------------
def _check_fields(gw: Gateway, reader: FormReader) -> dict[str, str]:
    unknown = [n for n in reader.field_order if n not in FORM_FIELDS]
    if unknown:
        raise Refusal(
            400,
            "invalid_upload",
            "the form has a field the gateway does not forward; accepted: checksum, file_name, file_type, purpose",
            hint="the gateway forwards only the fields it knows, so no data can travel unscanned",
        )
    _check_kind(gw, reader)
    checksum = reader.fields.get("checksum")
    if checksum is not None and _CHECKSUM.fullmatch(checksum) is None:
        raise Refusal(400, "invalid_upload", "'checksum' must be the file's SHA-256 in 64 hex digits", param="checksum")
    if not isinstance(reader.fields.get("file_name"), str) or not reader.fields["file_name"].strip():
        raise Refusal(400, "invalid_upload", "the form field 'file_name' is required", param="file_name")
    return {"purpose": PURPOSE, "file_type": FILE_TYPE, **({"checksum": checksum} if checksum else {})}


def _check_kind(gw: Gateway, reader: FormReader) -> None:
    """Purpose and file type (also checked as soon as a file part starts: the fields come before it)."""
    purpose = reader.fields.get("purpose", PURPOSE)
    steps.check_only_purpose(gw, purpose, PURPOSE, "Together", "eval, batch-api and calibration")
    file_type = reader.fields.get("file_type", FILE_TYPE)
    if file_type != FILE_TYPE:
        raise Refusal(
            415,
            "file_type_not_scanned",
            "this gateway scans JSONL files record by record; CSV and Parquet uploads are refused",
            param="file_type",
            hint="convert the dataset to JSONL (one JSON object per line) and upload that",
        )


def _check_field_part(part: PartInfo) -> None:
    if part.name in FORM_FIELDS:
        steps._check_part_headers(part)


def _sink(gw: Gateway, spool: Spool) -> ScanSink:
    return steps.records_sink(gw, spool, record_problem)


def _form(fields: list[tuple[str, str]]) -> tuple[str, bytes]:
    """A multipart/form-data body of text fields only (values validated or written by the gateway)."""
    boundary = "bastion-" + secrets.token_hex(16)
    body = bytearray()
    for name, value in fields:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", bytes(body)


def _file_id(value: Any) -> str | None:
    return value if isinstance(value, str) and _FILE_ID.fullmatch(value) and not value.startswith(HELD_PREFIX) else None


# -- 1. POST /v1/files: the gateway answers the redirect itself ---------------------------------------------
async def files_create(gw: Gateway, ex: Exchange) -> Response:
    def no_file(part: PartInfo) -> ScanSink:
        raise Refusal(
            400,
            "invalid_upload",
            "files.upload sends form fields only here; the file's bytes go to the upload URL the answer names",
            param="file",
            hint="use the together SDK's files.upload, or POST /v1/files/upload for a form with the file in it",
        )

    reader = FormReader(ex.request.headers.get("content-type"), no_file, check_field=_check_field_part)
    await gw.feed(ex, 256 * 1024, reader.write)
    await anyio.to_thread.run_sync(reader.finish)
    fields = _check_fields(gw, reader)
    client_name = reader.fields["file_name"]
    filename = await anyio.to_thread.run_sync(steps.safe_filename, gw, client_name)
    now = datetime.now(UTC)
    await anyio.to_thread.run_sync(gw.state.expire, now)
    secret, secret_digest = presigned.new_ticket()
    up = HeldUpload(
        upload_id=minted.random_id(HELD_PREFIX, 24),
        upstream=ex.upstream_name,
        client=ex.fingerprint,
        purpose=PURPOSE,
        filename=filename,
        mime_type="application/jsonl",
        bytes=0,  # not known until the PUT
        created_at=now,
        expires_at=now + timedelta(seconds=UPLOAD_TTL),
        meta={"ticket_sha256": secret_digest, "checksum": fields.get("checksum")},
    )
    await anyio.to_thread.run_sync(gw.state.upload_create, up)
    ex.audit.update(
        upload_id=up.upload_id,
        purpose=PURPOSE,
        filename_sha256="sha256:" + hashlib.sha256(client_name.encode()).hexdigest()[:16],
    )
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_redirected_to_gateway")
    location = presigned.gateway_url(
        ex.request, ex.upstream_name, f"/bastion/uploads/{up.upload_id}", [("sig", secret)]
    )
    return Response(
        b"",
        status_code=302,
        headers={"location": location, "x-together-file-id": up.upload_id, "cache-control": "no-store"},
    )


# -- 2. PUT <gateway upload URL>: scan, refuse or hold ------------------------------------------------------
def _no_upload() -> Refusal:
    return Refusal(
        404,
        "upload_not_found",
        "no pending upload with that URL on this gateway (it expired, was used, or the URL is wrong)",
        hint="start the upload again with files.upload",
    )


async def upload_put(gw: Gateway, ex: Exchange) -> Response:
    upload_id = ex.ids["upload_id"]
    sig = ex.request.query_params.get("sig", "")
    up = await anyio.to_thread.run_sync(gw.state.upload_get, upload_id)
    if up is None or up.upstream != ex.upstream_name or not presigned.ticket_matches(sig, up.meta.get("ticket_sha256")):
        raise _no_upload()
    ex.fingerprint = up.client  # the capability stands for the client that asked for it
    allowed = gw.settings.allowed_clients
    if allowed is not None and up.client not in allowed:
        raise Refusal(401, "client_not_allowed", "this gateway does not accept the client that opened this upload")
    ex.audit["upload_id"] = up.upload_id
    if datetime.now(UTC) > up.expires_at:
        await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)
        raise Refusal(404, "upload_expired", "the upload URL expired (it lives one hour); start the upload again")
    held = await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id)
    if up.state != "open" or held:
        raise Refusal(409, "upload_not_pending", "this upload URL was used already; start the upload again")
    spool = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="scanned upload")
    try:
        sink = _sink(gw, spool)
        await gw.feed(ex, gw.settings.max_upload_bytes, sink.write)
        await anyio.to_thread.run_sync(sink.close)
        declared = up.meta.get("checksum")
        if isinstance(declared, str) and declared != sink.input_sha256.removeprefix("sha256:"):
            raise Refusal(
                400,
                "checksum_mismatch",
                "the uploaded bytes do not match the 'checksum' given when the upload was started",
                hint="upload the file again",
            )
        facts = steps.scanned(gw, ex, sink, "upload")  # refuses a blocked or empty file, checks residency
        await anyio.to_thread.run_sync(_hold, gw, up, spool, facts)
    except StateConflict:  # another PUT to the same URL got there first: its upload stays
        raise Refusal(409, "upload_not_pending", "this upload URL was used already; start the upload again") from None
    except BaseException:
        await anyio.to_thread.run_sync(gw.state.upload_delete, up.upload_id)  # a refused upload is gone
        raise
    finally:
        spool.discard()
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_scanned_and_held")
    return Response(b"", status_code=200, headers={"etag": f'"{facts["output_sha256"][-32:]}"'})


def _hold(gw: Gateway, up: HeldUpload, spool: Spool, facts: dict[str, Any]) -> None:
    """The scanned bytes and the scan's facts, held encrypted as the upload's two parts."""
    now = datetime.now(UTC)
    with gw.state.parts.writer() as w:
        for block in spool.blocks():
            w.write(block)
        blob = w.commit()
    facts_blob = gw.state.parts.put(json.dumps(facts, sort_keys=True).encode())
    try:
        gw.state.upload_add_part(up.upload_id, HeldPart("scanned", blob.size, blob.sha256, blob.handle, now))
    except BaseException:
        gw.state.parts.delete(facts_blob.handle)  # (the scanned part's bytes are removed by upload_add_part)
        raise
    gw.state.upload_add_part(
        up.upload_id, HeldPart("facts", facts_blob.size, facts_blob.sha256, facts_blob.handle, now)
    )


# -- 3. POST /v1/files/{id}/preprocess: the gateway uploads to Together now ---------------------------------
async def files_preprocess(gw: Gateway, ex: Exchange) -> Response:
    file_id = ex.ids["file_id"]
    if HELD_ID.fullmatch(file_id) is None:
        # a file uploaded through the gateway's direct route (or an earlier redirect flow): pass through
        item = await anyio.to_thread.run_sync(
            lambda: gw.state.admitted(ex.upstream_name, file_id, client=ex.fingerprint)
        )
        if item is None or item.decision not in ("allow", "redact"):
            raise Refusal(
                403,
                "unscanned_file",
                "the file was not uploaded through this gateway for this upstream by this client",
                param="file_id",
                hint="upload the file through the gateway (files.upload) and use the id it returns",
            )
        return await gw.forward(ex)
    up = await anyio.to_thread.run_sync(gw.state.upload_get, file_id)
    if up is None or up.upstream != ex.upstream_name or up.client != ex.fingerprint:
        raise Refusal(
            404,
            "upload_not_found",
            "no upload with that id on this gateway for this client",
            hint="upload the file through the gateway with the same credentials",
        )
    ex.audit.update(upload_id=up.upload_id, purpose=up.purpose)
    busy = Refusal(
        409,
        "upload_in_progress",
        "this upload is being sent to Together by another request",
        hint="wait for it; calling preprocess again afterwards returns the same file",
    )
    return await steps.complete_once(
        gw, ex, up.upload_id, lambda held: _send_held(gw, ex, held), busy, replay_audit="file_id"
    )


async def _send_held(gw: Gateway, ex: Exchange, up: HeldUpload) -> Response:
    parts = {p.part_id: p for p in await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id)}
    scanned, facts_part = parts.get("scanned"), parts.get("facts")
    if scanned is None or facts_part is None:
        raise Refusal(
            409,
            "upload_not_received",
            "the file's bytes have not been uploaded yet to the URL the gateway answered files.upload with",
            hint="PUT the file to that URL first (the together SDK does this itself)",
        )
    facts = json.loads(b"".join(await anyio.to_thread.run_sync(lambda: list(gw.state.parts.read(facts_part.blob)))))
    ex.audit["scan"] = facts
    gw.check_residency(ex, facts.get("classification"))
    decision = await steps.admit(gw, ex, facts)
    ctype, form = _form(
        [("purpose", up.purpose), ("file_name", up.filename), ("file_type", FILE_TYPE), ("checksum", scanned.sha256)]
    )
    reply = await gw.send(ex, path="/v1/files", content=form, content_type=ctype)
    status = reply.response.status_code
    headers = reply.response.headers
    raw = await read_limited(reply.response, MAX_RESPONSE, "the file creation")
    if status == 409 and _file_id(steps._json_field(raw, "file_id")) is not None:
        # Together has a file with exactly these bytes (same checksum): that file holds what was scanned
        remote = _file_id(steps._json_field(raw, "file_id"))
        assert remote is not None
        await anyio.to_thread.run_sync(steps.remember, gw, ex, remote, facts, decision, up.purpose)
        reply = await gw.send(ex, method="GET", path=f"/v1/files/{remote}")
        return await _finish(gw, ex, up, reply, decision, remote, stage="existing_file")
    remote = _file_id(headers.get("x-together-file-id"))
    if status not in (301, 302, 303, 307, 308) or remote is None:
        await gw.record(ex, decision, event="upstream_response", status=status, stage="create")
        if status < 400:
            raise Refusal(502, "upstream_error", "Together answered the file creation without an upload URL and id")
        return gw.buffered_response(status, await anyio.to_thread.run_sync(gw.mask, raw), headers)
    target = presigned.check_upload_url(
        ex.upstream, headers.get("location"), what="the file creation", store_hosts=UPLOAD_HOSTS, provider="Together"
    )
    ex.audit.update(file_id=remote, upload_host=target.host)
    store, _ = await presigned.send(
        gw,
        ex,
        "PUT",
        target,
        content=gw.state.parts.aiter(scanned.blob),
        content_length=scanned.size,  # only Content-Length, as the SDK sends it: the URL may sign Content-Type
        what="the upload of the scanned file to Together's object store",
    )
    store_status = store.status_code
    if not 200 <= store_status < 300:
        await gw.record(ex, decision, event="upstream_response", status=store_status, stage="object_store")
        raise Refusal(
            502,
            "upload_store_error",
            f"Together's object store refused the scanned file (status {store_status}); file {remote} is incomplete",
            hint="upload the file again",
        )
    await anyio.to_thread.run_sync(steps.remember, gw, ex, remote, facts, decision, up.purpose)
    reply = await gw.send(ex, path=f"/v1/files/{remote}/preprocess")
    return await _finish(gw, ex, up, reply, decision, remote, stage="preprocess")


async def _finish(
    gw: Gateway, ex: Exchange, up: HeldUpload, reply: Any, decision: str, remote: str, *, stage: str
) -> Response:
    raw = await read_limited(reply.response, MAX_RESPONSE, "the file preprocessing")
    status = reply.response.status_code
    if 200 <= status < 300:
        await anyio.to_thread.run_sync(gw.state.upload_set_result, up.upload_id, raw, remote)
    else:
        raw = await anyio.to_thread.run_sync(gw.mask, raw)
    await gw.record(ex, decision, event="upstream_response", status=status, stage=stage, file_id=remote)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
    return gw.buffered_response(status, raw, reply.response.headers)


# -- POST /v1/files/upload: the direct multipart form ------------------------------------------------------
async def files_upload_form(gw: Gateway, ex: Exchange) -> Response:
    settings = gw.settings
    spool = Spool(gw.spool_dir, max_bytes=settings.max_upload_bytes, what="rewritten upload")
    sinks: list[ScanSink] = []
    reader: FormReader

    def open_file(part: PartInfo) -> ScanSink:
        if part.name != "file" or sinks:
            raise Refusal(400, "invalid_upload", "unexpected file part; only one 'file' is accepted", param="file")
        steps._check_part_headers(part)
        _check_kind(gw, reader)
        sinks.append(_sink(gw, spool))
        return sinks[0]

    try:
        reader = FormReader(ex.request.headers.get("content-type"), open_file, check_field=_check_field_part)
        await gw.feed(ex, settings.max_upload_bytes, reader.write)
        await anyio.to_thread.run_sync(reader.finish)
        if not sinks:
            raise Refusal(400, "invalid_upload", "the form has no 'file' part", param="file")
        fields = _check_fields(gw, reader)
        if "checksum" in fields:
            raise Refusal(400, "invalid_upload", "files/upload takes no 'checksum' field", param="checksum")
        client_name = reader.fields["file_name"]
        ex.audit.update(
            purpose=PURPOSE, filename_sha256="sha256:" + hashlib.sha256(client_name.encode()).hexdigest()[:16]
        )
        filename = await anyio.to_thread.run_sync(steps.safe_filename, gw, client_name)
        facts = steps.scanned(gw, ex, sinks[0], "upload")
        form = [("purpose", PURPOSE), ("file_name", filename), ("file_type", FILE_TYPE)]
        request_digest = hashlib.sha256(json.dumps([form, facts["output_sha256"]]).encode()).hexdigest()

        def run() -> Awaitable[Response]:
            def file_id(raw: bytes) -> str | None:
                return _file_id(steps._json_field(raw, "id"))

            return steps.send_file(gw, ex, facts, spool, form, filename, PURPOSE, "the file upload", file_id)

        return await gw.once(ex, request_digest, run)
    finally:
        spool.discard()


# -- /v1/files/multipart/*: refused ------------------------------------------------------------------------
async def multipart_refused(gw: Gateway, ex: Exchange) -> Response:
    raise Refusal(
        403,
        "upload_flow_not_supported",
        "Together's multipart upload (files over 5 GB, bytes sent to presigned part URLs) is not proxied by this "
        "gateway; nothing was forwarded",
        hint="split the dataset into files under 5 GB (and under the gateway's max_upload_bytes) and upload each",
    )
