"""LFS objects of a dataset commit: held and scanned by the gateway, sent to the Hub by the gateway.

1. ``POST /datasets/{ns}/{repo}.git/info/lfs/objects/batch`` is answered by the gateway itself (nothing
   goes to the Hub): every object gets a ``basic`` upload action whose ``href`` is a gateway URL with a
   one-object ticket (:mod:`bastion.gateway.presigned`). The client never learns an object-store URL.
2. ``PUT`` of the bytes to that URL: they must hash to the announced oid and size; JSONL is scanned
   record by record (redaction rewrites it), Parquet row by row (allow or block). The admitted output is
   held encrypted in the state store's part store, bound to (upstream, client, repository, oid).
3. ``POST .../commit/{rev}`` naming the oid in an ``lfsFile`` line: only an object held (admitted) for
   this client and repository is accepted. The gateway then asks the Hub's LFS batch endpoint for the
   *output* object (its sha256 and size differ when it was redacted), uploads it to the returned
   presigned URL (basic, or multipart: parts + completion), calls ``verify``, and rewrites the
   ``lfsFile`` line to the output oid and size. The held bytes are dropped once the Hub has them.

Xet (``xet-write-token``) is refused: the Xet protocol uploads content-defined chunks of the file to a
CAS service, which the gateway cannot scan as records.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx

from bastion.adapters.hf_hub.data import PARQUET_MAGIC, parquet_not_rewritten, scan_parquet
from bastion.adapters.openai import steps
from bastion.gateway import minted, presigned
from bastion.gateway.errors import Refusal
from bastion.gateway.proxy import read_limited
from bastion.gateway.scan import ScanSink, decision_refusal
from bastion.gateway.spool import Spool
from bastion.gateway.state import Admitted, HeldPart, HeldUpload, StateConflict

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

LFS_MIME = "application/vnd.git-lfs+json"
HELD_TTL = timedelta(hours=24)
PURPOSE = "hf-lfs-"  # + the kind the object was scanned as ("jsonl" | "parquet")
UPLOAD_PATH = "/bastion-lfs/{object_id}/{ticket}"
MAX_OBJECTS = 1000


def object_id(upstream: str, client: str, repo: str, oid: str) -> str:
    """The held object's id: one per (upstream, client, repository, oid)."""
    return minted.derived_id("hflfs_", f"{upstream}|{client}|{repo}|{oid}", 32)


def admission_ref(held: HeldUpload) -> str:
    """The admission's ref: the held object's id and its ticket's digest, so that each hold (a new batch after
    the 24-hour hold expired, perhaps under another policy) is admitted on its own scan, never on an older one."""
    return f"{held.upload_id}.{str(held.meta.get('ticket_sha256', ''))[:16]}"


def record_problem(record: Any) -> str | None:
    return None if isinstance(record, dict) else "each line of a dataset JSONL file must be a JSON object"


# -- 1. the batch, answered by the gateway ------------------------------------------------------------
def _batch_objects(gw: Gateway, doc: Any) -> list[tuple[str, int]]:
    if not isinstance(doc, dict) or set(doc) - {"operation", "transfers", "objects", "hash_algo", "ref"}:
        raise Refusal(
            400,
            "invalid_request",
            "an LFS batch request is {operation, transfers, objects, hash_algo, ref}; another field was sent",
        )
    if doc.get("operation") != "upload":
        raise Refusal(
            403,
            "route_not_allowed",
            "this gateway routes LFS uploads only ('operation': 'upload'); downloads go to the Hub directly",
            param="operation",
        )
    if doc.get("hash_algo", "sha256") != "sha256":
        raise Refusal(400, "invalid_request", "'hash_algo' must be sha256", param="hash_algo")
    transfers = doc.get("transfers", ["basic"])
    if not isinstance(transfers, list) or "basic" not in transfers:
        raise Refusal(
            400,
            "transfer_not_allowed",
            "the gateway takes LFS objects with the 'basic' transfer only (it scans the bytes before they go on); "
            "Xet is refused because its chunked uploads cannot be scanned as records",
            param="transfers",
            hint="set HF_HUB_DISABLE_XET=1 for huggingface_hub",
        )
    objects = doc.get("objects")
    if not isinstance(objects, list) or not 0 < len(objects) <= MAX_OBJECTS:
        raise Refusal(400, "invalid_request", f"'objects' must list 1 to {MAX_OBJECTS} objects", param="objects")
    out = []
    for i, obj in enumerate(objects):
        oid = obj.get("oid") if isinstance(obj, dict) else None
        size = obj.get("size") if isinstance(obj, dict) else None
        if (
            not isinstance(oid, str)
            or len(oid) != 64
            or any(c not in "0123456789abcdef" for c in oid)
            or not isinstance(size, int)
            or isinstance(size, bool)
            or size < 1
            or set(obj) - {"oid", "size"}
        ):
            raise Refusal(
                400, "invalid_request", f"'objects[{i}]' must be {{oid: <64 hex sha256>, size: <bytes, at least 1>}}"
            )
        out.append((oid, size))
    return out


async def batch(gw: Gateway, ex: Exchange) -> dict[str, Any]:
    """The gateway's own answer to an LFS batch upload request (nothing goes to the Hub)."""
    from bastion.gateway import jsonbody

    if ex.fingerprint == "anonymous":
        raise Refusal(401, "invalid_credentials", "an LFS upload needs the client's Hugging Face token")
    raw = await gw.read_body(ex)
    wanted = _batch_objects(gw, jsonbody.plain(jsonbody.loads(raw)))
    repo = f"{ex.ids['namespace']}/{ex.ids['repo']}"
    now = datetime.now(UTC)
    await anyio.to_thread.run_sync(gw.state.expire, now)
    answered = []
    for oid, size in wanted:
        if size > gw.settings.max_upload_bytes:
            answered.append(
                {
                    "oid": oid,
                    "size": size,
                    "error": {
                        "code": 413,
                        "message": f"larger than this gateway's limit of {gw.settings.max_upload_bytes} bytes",
                    },
                }
            )
            continue
        oid_id = object_id(ex.upstream_name, ex.fingerprint, repo, oid)
        held = await anyio.to_thread.run_sync(gw.state.upload_get, oid_id)
        if held is not None and held.bytes == size:
            parts = await anyio.to_thread.run_sync(gw.state.upload_parts, oid_id)
            if parts or held.state == "completed":
                answered.append({"oid": oid, "size": size})  # held (scanned) already: no upload action
                continue
        if held is not None:
            await anyio.to_thread.run_sync(gw.state.upload_delete, oid_id)
        ticket, ticket_sha = presigned.new_ticket()
        await anyio.to_thread.run_sync(
            gw.state.upload_create,
            HeldUpload(
                upload_id=oid_id,
                upstream=ex.upstream_name,
                client=ex.fingerprint,
                purpose="hf-lfs",
                filename=oid,
                mime_type="application/octet-stream",
                bytes=size,
                created_at=now,
                expires_at=now + HELD_TTL,
                meta={"oid": oid, "repo": repo, "ticket_sha256": ticket_sha},
            ),
        )
        href = presigned.gateway_url(ex.request, ex.upstream_name, UPLOAD_PATH.format(object_id=oid_id, ticket=ticket))
        answered.append(
            {
                "oid": oid,
                "size": size,
                "authenticated": True,
                "actions": {"upload": {"href": href, "expires_in": int(HELD_TTL.total_seconds())}},
            }
        )
    ex.audit["lfs_objects"] = [{"oid": o, "size": s} for o, s in wanted]
    return {"transfer": "basic", "objects": answered, "hash_algo": "sha256"}


# -- 2. the bytes, PUT to the gateway ------------------------------------------------------------------
async def receive(gw: Gateway, ex: Exchange) -> None:
    """Take the bytes of one held object, check them against its oid, scan them and hold the admitted output."""
    oid_id, ticket = ex.ids["object_id"], ex.ids["ticket"]
    ex.ids = {"object_id": oid_id}  # the ticket is a capability: never in the audit log
    held = await anyio.to_thread.run_sync(gw.state.upload_get, oid_id)
    if (
        held is None
        or held.upstream != ex.upstream_name
        or not presigned.ticket_matches(ticket, held.meta.get("ticket_sha256"))
        or datetime.now(UTC) > held.expires_at
    ):
        raise Refusal(
            404,
            "upload_not_found",
            "no pending LFS upload for this URL on this gateway (unknown, used for another upstream, or expired)",
            hint="run the upload again: the gateway hands out a new upload URL",
        )
    ex.fingerprint = held.client  # the ticket was issued to this client (the PUT carries no credential)
    allowed = gw.settings.allowed_clients
    if allowed is not None and held.client not in allowed:
        raise Refusal(401, "client_not_allowed", "this gateway no longer accepts the client that started this upload")
    oid = str(held.meta["oid"])
    ex.audit.update(lfs_oid=oid, lfs_size=held.bytes, repo_sha256=_digest(str(held.meta["repo"])))
    raw = Spool(gw.spool_dir, max_bytes=held.bytes, what="LFS object")
    out = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what="rewritten LFS object")
    try:
        await gw.feed(ex, held.bytes, raw.write)
        raw.close_write()
        if raw.size != held.bytes or raw.sha256 != oid:
            raise Refusal(
                400,
                "checksum_mismatch",
                "the uploaded bytes do not match the oid and size announced in the LFS batch request",
                hint="upload the file again from the start",
            )
        kind, result = await anyio.to_thread.run_sync(_scan_held, gw, raw, out)
        if isinstance(result, ScanSink):
            facts = steps.scanned(gw, ex, result, "LFS upload")  # metrics, block, residency
        else:
            facts = result
            ex.audit["scan"] = facts
            refusal = decision_refusal(facts, "LFS upload (Parquet)")
            if refusal is not None:
                raise refusal
            if facts["scan_decision"] == "redact":
                raise parquet_not_rewritten("the LFS upload", facts)
            gw.check_residency(ex, facts["classification"])
        source = out if kind == "jsonl" else raw
        decision = "redact" if facts["scan_decision"] == "redact" else "allow"
        added = await anyio.to_thread.run_sync(_hold, gw, oid_id, source)
        if added:
            item = Admitted(
                upstream=ex.upstream_name,
                ref=admission_ref(held),
                client=held.client,
                decision=decision,
                classification=facts.get("classification"),
                input_sha256=oid,
                output_sha256=source.sha256,
                records=int(facts["records"]),
                policy=gw.policy_name,
                purpose=PURPOSE + kind,
                admitted_at=datetime.now(UTC),
            )
            await anyio.to_thread.run_sync(gw.state.admit, item)
        ex.audit["lfs_output_sha256"] = source.sha256
        await gw.record(ex, decision, event="lfs_object_held", held_again=not added)
        gw.metrics.requests.labels(ex.upstream_name, ex.route.name, decision).inc()
    finally:
        raw.discard()
        out.discard()


def _scan_held(gw: Gateway, raw: Spool, out: Spool) -> tuple[str, Any]:
    if b"".join(raw.blocks(0, len(PARQUET_MAGIC))) == PARQUET_MAGIC:
        with raw.reader() as fh:
            return "parquet", scan_parquet(gw.engine, fh, "the LFS upload")
    sink = steps.records_sink(gw, out, record_problem)
    for block in raw.blocks():
        sink.write(block)
    sink.close()
    return "jsonl", sink


def _hold(gw: Gateway, oid_id: str, source: Spool) -> bool:
    """Hold the admitted bytes encrypted; False when the object is held already (a repeated PUT)."""
    with gw.state.parts.writer() as writer:
        for block in source.blocks():
            writer.write(block)
        blob = writer.commit()
    try:
        gw.state.upload_add_part(oid_id, HeldPart("lfs", blob.size, blob.sha256, blob.handle, datetime.now(UTC)))
    except StateConflict:
        return False
    return True


# -- 3. at commit: the admitted object, sent to the Hub -----------------------------------------------
async def admitted_object(gw: Gateway, ex: Exchange, repo: str, oid: str, size: int, kind: str, where: str) -> Admitted:
    """The admission of an ``lfsFile`` line's object, or the refusal that says it was never scanned here."""
    oid_id = object_id(ex.upstream_name, ex.fingerprint, repo, oid)
    held = await anyio.to_thread.run_sync(gw.state.upload_get, oid_id)
    item = None if held is None else await anyio.to_thread.run_sync(gw._admitted, ex, admission_ref(held))
    if item is None or held is None or item.decision not in ("allow", "redact"):
        raise Refusal(
            403,
            "unscanned_file",
            f"{where} names an LFS object that was not uploaded through this gateway by this client for this "
            "repository (or its 24-hour hold expired), so it was never scanned; the commit was not forwarded",
            param=where,
            hint="upload the file with huggingface_hub through the gateway (HF_HUB_DISABLE_XET=1) in the same commit",
        )
    if held.bytes != size:
        raise Refusal(400, "invalid_commit", f"{where}: 'size' differs from the size of the uploaded object")
    if item.purpose != PURPOSE + kind:
        raise Refusal(
            400,
            "invalid_commit",
            f"{where}: the object was scanned as {str(item.purpose).removeprefix(PURPOSE)} "
            f"but the path is a {kind} file",
        )
    return item


async def push(gw: Gateway, ex: Exchange, repo: str, revision: str, item: Admitted) -> tuple[str, int]:
    """Make sure the Hub has the admitted output of ``item``; its (oid, size). Once per object (serialised)."""
    oid_id = item.ref.split(".", 1)[0]
    async with gw.state.aupload_completing(oid_id) as c:
        if c.completed:
            assert c.result is not None
            done = json.loads(c.result)
            return str(done["oid"]), int(done["size"])
        parts = await anyio.to_thread.run_sync(gw.state.upload_parts, oid_id)
        if len(parts) != 1:
            raise Refusal(409, "upload_not_found", "the LFS object's bytes are not held on this gateway any more")
        part = parts[0]
        spool = Spool(gw.spool_dir, what="held LFS object")
        try:
            await anyio.to_thread.run_sync(_unseal, gw, part.blob, spool)
            if spool.sha256 != item.output_sha256:
                raise Refusal(500, "internal_error", "a held LFS object does not match its admitted digest")
            await _upload(gw, ex, repo, revision, spool.sha256, spool.size, spool)
        finally:
            spool.discard()
        result = json.dumps({"oid": spool.sha256, "size": spool.size}).encode()
        await anyio.to_thread.run_sync(gw.state.upload_set_result, oid_id, result, None)
        return spool.sha256, spool.size


def _unseal(gw: Gateway, handle: str, spool: Spool) -> None:
    for block in gw.state.parts.read(handle):
        spool.write(block)
    spool.close_write()


async def _hub_json(gw: Gateway, ex: Exchange, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    saved = ex.headers
    ex.headers = [("accept", LFS_MIME)]
    try:
        reply = await gw.send(
            ex, method="POST", path=path, query=[], content=json.dumps(payload).encode(), content_type=LFS_MIME
        )
    finally:
        ex.headers = saved
    raw = await read_limited(reply.response, 4 * 1024 * 1024, "the LFS batch request")
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        doc = None
    return reply.response.status_code, doc


async def _upload(gw: Gateway, ex: Exchange, repo: str, revision: str, oid: str, size: int, spool: Spool) -> None:
    payload = {
        "operation": "upload",
        "transfers": ["basic", "multipart"],  # never "xet": the gateway sends the bytes it scanned itself
        "objects": [{"oid": oid, "size": size}],
        "hash_algo": "sha256",
        "ref": {"name": revision},
    }
    status, doc = await _hub_json(gw, ex, f"/datasets/{repo}.git/info/lfs/objects/batch", payload)
    objects = doc.get("objects") if isinstance(doc, dict) else None
    obj = objects[0] if isinstance(objects, list) and len(objects) == 1 and isinstance(objects[0], dict) else None
    if not 200 <= status < 300 or obj is None:
        raise Refusal(
            502 if status < 400 or status >= 500 else status,
            "upstream_error",
            f"the Hub answered the gateway's LFS batch request with HTTP {status}; the commit was not forwarded",
            hint="check that the repository exists and that the token may write to it",
        )
    if "error" in obj:
        code = obj["error"].get("code") if isinstance(obj["error"], dict) else None
        raise Refusal(
            502, "upstream_error", f"the Hub refused the LFS object (LFS error {code}); the commit was not forwarded"
        )
    if doc.get("transfer") not in (None, "basic", "multipart"):
        raise Refusal(502, "upstream_error", "the Hub chose an LFS transfer the gateway did not offer")
    actions = obj.get("actions")
    if actions is None:
        return  # the Hub has this object already
    upload = actions.get("upload") if isinstance(actions, dict) else None
    if not isinstance(upload, dict):
        raise Refusal(502, "upstream_error", "the Hub's LFS batch answer has no upload action")
    header = upload.get("header") or {}
    href = _checked(ex, upload.get("href"))
    chunk = header.get("chunk_size") if isinstance(header, dict) else None
    if chunk is None:
        resp, _ = await presigned.send(
            gw,
            ex,
            "PUT",
            href,
            content=spool.aiter(),
            content_length=size,
            what="the upload to the Hub's LFS store",
        )
        _ok(resp, "the upload to the Hub's LFS store")
    else:
        await _multipart(gw, ex, header, chunk, href, oid, size, spool)
    verify = actions.get("verify")
    if isinstance(verify, dict):
        url = _checked(ex, verify.get("href"))
        resp, _ = await presigned.send(
            gw,
            ex,
            "POST",
            url,
            content=json.dumps({"oid": oid, "size": size}).encode(),
            headers=[("content-type", LFS_MIME), ("accept", LFS_MIME)],
            api_auth=ex.auth,  # only on the Hub's own origin: a store URL is authorised by its signature
            what="the LFS verify call",
        )
        _ok(resp, "the LFS verify call")


async def _multipart(
    gw: Gateway, ex: Exchange, header: dict[str, Any], chunk: Any, href: httpx.URL, oid: str, size: int, spool: Spool
) -> None:
    try:
        chunk_size = int(chunk)
    except (TypeError, ValueError):
        chunk_size = 0
    urls = sorted((int(k), v) for k, v in header.items() if isinstance(k, str) and k.isdigit())
    if chunk_size <= 0 or len(urls) != math.ceil(size / chunk_size):
        raise Refusal(502, "upstream_error", "the Hub's multipart LFS upload action is malformed")
    parts = []
    for n, (number, url) in enumerate(urls):
        target = _checked(ex, url)
        offset = n * chunk_size
        length = min(chunk_size, size - offset)
        resp, _ = await presigned.send(
            gw,
            ex,
            "PUT",
            target,
            content=spool.aiter_range(offset, length),
            content_length=length,
            what=f"part {number} of the upload to the Hub's LFS store",
        )
        _ok(resp, f"part {number} of the upload to the Hub's LFS store")
        etag = resp.headers.get("etag")
        if not etag:
            raise Refusal(502, "upstream_error", f"the LFS store answered part {number} without an ETag")
        parts.append({"partNumber": n + 1, "etag": etag})
    resp, _ = await presigned.send(
        gw,
        ex,
        "POST",
        href,
        content=json.dumps({"oid": oid, "parts": parts}).encode(),
        headers=[("content-type", LFS_MIME), ("accept", LFS_MIME)],
        what="the multipart completion call",
    )
    _ok(resp, "the multipart completion call")


def _checked(ex: Exchange, url: object) -> httpx.URL:
    """A URL of the Hub's batch answer: https, or plain http only to an origin the upstream's configuration names."""
    return presigned.check_upload_url(
        ex.upstream, url, what="the LFS batch request", store_hosts=None, hosts_key=None, provider="the Hub"
    )


def _ok(resp: httpx.Response, what: str) -> None:
    if not 200 <= resp.status_code < 300:
        raise Refusal(
            502,
            "upstream_error",
            f"{what} was answered with HTTP {resp.status_code}; the commit was not forwarded",
            hint="retry the commit: the gateway still holds the scanned object",
        )


def _digest(value: str) -> str:
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()[:16]
