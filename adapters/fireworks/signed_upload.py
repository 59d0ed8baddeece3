"""Fireworks' signed-URL dataset upload (``:getUploadEndpoint`` → ``PUT`` → ``:validateUpload``), held by the gateway.

Fireworks answers ``:getUploadEndpoint`` with signed object-store URLs that the client ``PUT``s the bytes
to (``fireworks.lib.dataset_upload``; GCS V4 URLs with the size signed in as
``X-Goog-Content-Length-Range``): a host the gateway does not front. So the gateway never forwards that
call; it holds the flow itself:

1. ``:getUploadEndpoint {"filenameToSize": {name: size}}`` (one file per dataset) is answered by the
   gateway with a URL of its own, ``…/datasets/{d}/bastion-upload/{upload_id}/{ticket}``; nothing goes
   upstream. The ticket (:func:`bastion.gateway.presigned.new_ticket`, stored only as a digest) is the
   PUT's credential, as a signed URL's signature is: the SDK sends no API key there (the route is a
   capability route; the PUT stands for the client the ticket was issued to). It is valid one hour, like
   Fireworks' own URLs.
2. ``PUT`` to that URL: exactly the declared bytes, held in the gateway's encrypted part store.
3. ``:validateUpload``: the held file is scanned (records checked, personal data redacted, blocked data
   refused: then nothing at all went upstream). Only then does the gateway ask Fireworks for a signed URL
   for the *rewritten* size, check that it points at the configured object store
   (``upstreams.<name>.hosts.signed_urls``, default ``https://storage.googleapis.com``), ``PUT`` the
   rewritten bytes there itself (:mod:`bastion.gateway.presigned`: no Fireworks credential, the size
   pinned as the signature wants), and forward ``:validateUpload``. The dataset is admitted when
   Fireworks accepts it.

A ``:validateUpload`` with nothing held by the gateway for that dataset passes through unchanged.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.responses import JSONResponse, Response

from bastion.adapters.openai import steps
from bastion.gateway import jsonbody, minted, presigned
from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import read_limited
from bastion.gateway.spec import compiled
from bastion.gateway.spool import Spool
from bastion.gateway.state import HeldPart, HeldUpload, StateConflict

if TYPE_CHECKING:
    import httpx

    from bastion.gateway.app import Exchange, Gateway

UPLOAD_ID = minted.shape("fwds_", 32)
TICKET = presigned.TICKET
FILENAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,122}\.jsonl"
SIGNED_HOST = "signed_urls"  # upstreams.<name>.hosts key of the object store Fireworks' signed URLs point at
DEFAULT_SIGNED_ORIGIN = "https://storage.googleapis.com"
TTL = timedelta(hours=1)
MAX_RESPONSE = 4 * 1024 * 1024


def held_id(ex: Exchange, ref: str) -> str:
    """The held upload of a dataset for this upstream and client (found again at ``:validateUpload``)."""
    return minted.derived_id("fwds_", f"{ex.upstream_name}|{ex.fingerprint}|{ref}", 32)


def _bad(message: str, param: str = "filenameToSize") -> Refusal:
    return Refusal(400, "invalid_request", message, param=param)


async def get_upload_endpoint(gw: Gateway, ex: Exchange) -> Response:
    """Answer ``:getUploadEndpoint`` with a gateway URL; hold the flow (nothing is forwarded)."""
    from bastion.adapters.fireworks.spec import PURPOSE, dataset_ref, refuse_if_admitted

    ref = dataset_ref(ex.ids["account_id"], ex.ids["dataset_id"])
    await refuse_if_admitted(gw, ex, ref, "datasets.get_upload_endpoint")
    doc = jsonbody.plain(jsonbody.loads(await gw.read_body(ex) or b"null"))
    if not isinstance(doc, dict) or set(doc) - {"filenameToSize", "readMask"}:
        raise _bad("datasets.get_upload_endpoint takes {'filenameToSize': {<file name>: <size in bytes>}}")
    files = doc.get("filenameToSize")
    if not isinstance(files, dict) or not files:
        raise _bad("'filenameToSize' is required: {<file name>: <size in bytes>}")
    if len(files) > 1:
        raise _bad(
            f"the gateway takes one file per dataset on the signed-URL upload; this request names {len(files)} files",
        )
    [(name, declared)] = files.items()
    if compiled(FILENAME).fullmatch(name) is None:
        raise _bad("the file name must be a plain '.jsonl' name (letters, digits, '.', '_', '-')")
    size = int(declared) if isinstance(declared, str) and declared.isascii() and declared.isdigit() else None
    if isinstance(declared, int) and not isinstance(declared, bool):
        size = declared
    if size is None or not 0 < size <= gw.settings.max_upload_bytes:
        raise Refusal(
            413 if size else 400,
            "upload_too_large" if size else "invalid_request",
            f"the file's size must be a whole number of bytes between 1 and this gateway's limit of "
            f"{gw.settings.max_upload_bytes}",
            param="filenameToSize",
        )
    steps.check_purpose(gw, PURPOSE)
    filename = await anyio.to_thread.run_sync(steps.safe_filename, gw, name)
    now = datetime.now(UTC)
    await anyio.to_thread.run_sync(gw.state.expire, now)
    upload_id = held_id(ex, ref)
    if await anyio.to_thread.run_sync(gw.state.upload_get, upload_id) is not None:
        # a new call replaces the file registered by an earlier one, as at Fireworks
        await anyio.to_thread.run_sync(gw.state.upload_delete, upload_id)
    ticket, ticket_sha256 = presigned.new_ticket()
    held = HeldUpload(
        upload_id=upload_id,
        upstream=ex.upstream_name,
        client=ex.fingerprint,
        purpose=PURPOSE,
        filename=filename,
        mime_type=steps.FILE_CONTENT_TYPE,
        bytes=size,
        created_at=now,
        expires_at=now + TTL,
        meta={"dataset": ref, "ticket_sha256": ticket_sha256},
    )
    await anyio.to_thread.run_sync(gw.state.upload_create, held)
    ex.audit.update(
        upload_id=upload_id,
        declared_bytes=size,
        purpose=PURPOSE,
        filename_sha256="sha256:" + hashlib.sha256(name.encode()).hexdigest()[:16],
    )
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_opened")
    path = ex.path.removesuffix(":getUploadEndpoint") + f"/bastion-upload/{upload_id}/{ticket}"
    return JSONResponse({"filenameToSignedUrls": {name: presigned.gateway_url(ex.request, ex.upstream_name, path)}})


def _not_held() -> Refusal:
    return Refusal(
        404,
        "upload_not_found",
        "no pending dataset upload at this URL on this gateway (or it expired: the URLs live one hour)",
        hint="call datasets.get_upload_endpoint through the gateway again and PUT the file to the URL it returns",
    )


async def put_held(gw: Gateway, ex: Exchange) -> Response:
    """``PUT`` to a gateway upload URL: hold exactly the declared bytes (nothing is forwarded)."""
    from bastion.adapters.fireworks.spec import dataset_ref

    ticket = ex.ids["ticket"]
    ex.ids = {**ex.ids, "ticket": "sha256:" + presigned.ticket_digest(ticket)[:16]}  # the ticket is a credential
    up = await anyio.to_thread.run_sync(gw.state.upload_get, ex.ids["upload_id"])
    ref = dataset_ref(ex.ids["account_id"], ex.ids["dataset_id"])
    if (
        up is None
        or up.upstream != ex.upstream_name
        or up.meta.get("dataset") != ref
        or not presigned.ticket_matches(ticket, up.meta.get("ticket_sha256"))
        or datetime.now(UTC) > up.expires_at
    ):
        raise _not_held()
    ex.fingerprint = up.client  # the ticket was issued to this client (the PUT carries no credential)
    allowed = gw.settings.allowed_clients
    if allowed is not None and up.client not in allowed:
        raise Refusal(401, "client_not_allowed", "this gateway no longer accepts the client that started this upload")
    ex.audit["upload_id"] = up.upload_id
    held_parts = await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id)
    if up.state != "open" or held_parts:
        raise Refusal(
            409,
            "upload_not_pending",
            "this upload URL already received its file",
            hint="to replace the file, call datasets.get_upload_endpoint again and PUT to the new URL",
        )
    writer = gw.state.parts.writer()
    declared = up.bytes

    held = 0

    def write(data: bytes) -> None:
        nonlocal held
        held += len(data)
        if held > declared:
            raise Refusal(
                400,
                "invalid_upload",
                f"the body is larger than the {declared} bytes datasets.get_upload_endpoint declared",
                hint="send the file exactly as declared in filenameToSize",
            )
        writer.write(data)

    try:
        size = await gw.feed(ex, gw.settings.max_upload_bytes, write)
        if size != up.bytes:
            raise Refusal(
                400,
                "invalid_upload",
                f"the body has {size} bytes but datasets.get_upload_endpoint declared {up.bytes}",
                hint="send the file exactly as declared in filenameToSize",
            )
        blob = await anyio.to_thread.run_sync(writer.commit)
    except BaseException:
        writer.discard()
        raise
    part = HeldPart("fwpart_" + secrets.token_hex(12), blob.size, blob.sha256, blob.handle, datetime.now(UTC))
    try:
        await anyio.to_thread.run_sync(gw.state.upload_add_part, up.upload_id, part)
    except StateConflict:
        raise Refusal(409, "upload_not_pending", "this upload no longer takes its file") from None
    ex.audit.update(part_bytes=part.size, part_sha256=part.sha256)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="upload_part_held")
    return Response(b"", status_code=200)


async def validate_upload(gw: Gateway, ex: Exchange) -> Response:
    """``:validateUpload``: complete a held upload (scan, signed PUT, validate), or pass through."""
    from bastion.adapters.fireworks.spec import dataset_ref, refuse_if_admitted

    ref = dataset_ref(ex.ids["account_id"], ex.ids["dataset_id"])
    upload_id = held_id(ex, ref)
    up = await anyio.to_thread.run_sync(gw.state.upload_get, upload_id)
    if up is None:
        return await gw.forward(ex)  # nothing held here: Fireworks' own validation call, scanned and forwarded
    if up.state != "completed":
        await refuse_if_admitted(gw, ex, ref, "datasets.validate_upload")  # admitted meanwhile via :upload
    doc = jsonbody.plain(jsonbody.loads(await gw.read_body(ex) or b"{}"))
    if doc != {}:
        raise Refusal(400, "invalid_request", "datasets.validate_upload takes an empty object {}")
    ex.audit["upload_id"] = upload_id
    if up.state != "completed" and datetime.now(UTC) > up.expires_at:
        await anyio.to_thread.run_sync(gw.state.upload_delete, upload_id)
        raise Refusal(404, "upload_expired", "the held dataset upload expired (upload URLs live one hour)")
    busy = Refusal(
        409,
        "upload_in_progress",
        "this dataset's upload is being completed by another request",
        hint="wait for it; validating again afterwards returns the same result",
    )
    return await steps.complete_once(gw, ex, upload_id, lambda held: _complete(gw, ex, held, ref), busy)


async def _complete(gw: Gateway, ex: Exchange, up: HeldUpload, ref: str) -> Response:
    from bastion.adapters.fireworks.spec import PURPOSE, new_sink

    parts = await anyio.to_thread.run_sync(gw.state.upload_parts, up.upload_id)
    if len(parts) != 1:
        raise Refusal(
            400,
            "invalid_request",
            "the file was not uploaded yet",
            hint="PUT it to the URL datasets.get_upload_endpoint returned, then call datasets.validate_upload",
        )
    out = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten upload")
    try:
        sink = new_sink(gw, out)

        def scan_all() -> None:
            for block in gw.state.parts.read(parts[0].blob):
                sink.write(block)
            sink.close()

        await anyio.to_thread.run_sync(scan_all)
        facts = steps.scanned(gw, ex, sink, "upload")  # blocked data or residency: refused, nothing went upstream
        decision = await steps.admit(gw, ex, facts)
        url = await _signed_url(gw, ex, up.filename, out.size)
        if isinstance(url, Response):
            return url  # Fireworks refused it: its (masked) answer
        await _put_signed(gw, ex, url, out, decision)
        reply = await gw.send(ex, content=b"{}", content_type="application/json")
        raw = await read_limited(reply.response, MAX_RESPONSE, "datasets.validate_upload")
        status = reply.response.status_code
        admitted = ref if 200 <= status < 300 else None
        await anyio.to_thread.run_sync(steps.remember, gw, ex, admitted, facts, decision, PURPOSE)
        if admitted is not None:
            await anyio.to_thread.run_sync(gw.state.upload_set_result, up.upload_id, raw, None)
        else:
            raw = await anyio.to_thread.run_sync(gw.mask, raw)
        await gw.record(ex, decision, event="upstream_response", status=status, file_id=admitted)
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
        return gw.buffered_response(status, raw, reply.response.headers)
    finally:
        out.discard()


async def _signed_url(gw: Gateway, ex: Exchange, filename: str, size: int) -> httpx.URL | Response:
    """Fireworks' signed URL for the rewritten file (its size signed in), checked against the allowed store."""
    path = ex.path.removesuffix(":validateUpload") + ":getUploadEndpoint"
    body = json.dumps({"filenameToSize": {filename: str(size)}}).encode()
    reply = await gw.send(ex, path=path, content=body, content_type="application/json")
    raw = await read_limited(reply.response, MAX_RESPONSE, "datasets.get_upload_endpoint")
    status = reply.response.status_code
    if not 200 <= status < 300:
        raw = await anyio.to_thread.run_sync(gw.mask, raw)
        await gw.record(ex, "block", event="upstream_response", status=status, stage="get_upload_endpoint")
        return gw.buffered_response(status, raw, reply.response.headers)
    try:
        urls: Any = json.loads(raw).get("filenameToSignedUrls")
        url = urls[filename] if isinstance(urls, dict) else None
    except (ValueError, UnicodeDecodeError, AttributeError, KeyError):
        url = None
    # only the configured store's origin (no host pattern): Fireworks' stores are not a documented set
    return presigned.check_upload_url(
        ex.upstream,
        url,
        what="datasets.get_upload_endpoint",
        store_hosts=(),
        hosts_key=SIGNED_HOST,
        default_origin=DEFAULT_SIGNED_ORIGIN,
        provider="Fireworks",
    )


async def _put_signed(gw: Gateway, ex: Exchange, url: httpx.URL, out: Spool, decision: str) -> None:
    """PUT the rewritten bytes to the signed URL: no Fireworks credential, the size as the signature pins it."""
    n = out.size
    headers = [("content-type", "application/octet-stream"), ("x-goog-content-length-range", f"{n},{n}")]
    response, _ = await presigned.send(
        gw,
        ex,
        "PUT",
        url,
        content=out.aiter(),
        content_length=n,
        headers=headers,
        what="the upload of the dataset's file to the object store",
    )
    status = response.status_code
    await gw.record(ex, decision, event="signed_upload", status=status, bytes=n)
    if not 200 <= status < 300:
        raise Refusal(
            502,
            "signed_upload_failed",
            f"the object store did not take the dataset's file (status {status or 'none'}); it was not validated",
            hint="call datasets.get_upload_endpoint again and repeat the upload",
        )
