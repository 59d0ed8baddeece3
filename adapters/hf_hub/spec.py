"""Hugging Face Hub dataset uploads on the gateway core: ``https://huggingface.co`` (US).

``huggingface_hub``'s ``upload_file`` / ``upload_folder`` / ``create_commit`` to a **dataset** repository,
with ``HfApi(endpoint="http://<gateway>/<upstream>")``. What the gateway allows:

- ``POST /api/datasets/{ns}/{repo}/preupload/{rev}``: every path must be a file the gateway scans
  (:mod:`bastion.adapters.hf_hub.data`: ``.jsonl``, ``.parquet``, root ``README.md`` / ``.gitattributes`` /
  ``.gitignore``); each ``sample`` (the file's first bytes) is replaced by a neutral one of the same length
  and text/binary class; ``gitIgnore`` is scanned.
- ``POST /datasets/{ns}/{repo}.git/info/lfs/objects/batch``: answered by the gateway (basic transfer to a
  gateway URL); the ``PUT`` there is scanned and held; the Hub gets the admitted bytes at commit time from
  the gateway (:mod:`bastion.adapters.hf_hub.lfs`).
- ``POST /api/datasets/{ns}/{repo}/commit/{rev}`` (NDJSON): the header's summary/description scanned;
  inline ``file`` lines decoded and scanned by kind (JSONL per record with the same engine, redaction
  re-encodes the content, a block refuses the commit; Parquet allow/block; text files as one record);
  ``lfsFile`` lines must name an object this gateway admitted for this client and repository (rewritten
  to the object the gateway uploaded); ``deletedFile`` / ``deletedFolder`` pass.
- pass-through: whoami, dataset info, tree listing (``list_repo_files``; the next page's ``Link`` URL is
  rewritten to the gateway), ``validate-yaml`` (scanned JSON),
  ``create_repo`` for datasets (``region`` must agree with the upstream's jurisdiction).

Refused: Xet (``xet-write-token``: chunked CAS uploads cannot be scanned; set ``HF_HUB_DISABLE_XET=1``),
uploads to model, Space and kernel repositories, branches other than plain names (``refs/pr/N``), every
route not listed. Auth: ``Authorization: Bearer hf_...`` (the client's token re-written, or a gateway-held
one), never logged. Errors: the Hub's ``{"error": "<message>"}`` (plus ``code``), which
``hf_raise_for_status`` shows.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.responses import Response

from bastion.adapters.hf_hub import lfs
from bastion.adapters.hf_hub.data import (
    b64decode,
    neutral_sample,
    parquet_not_rewritten,
    path_kind,
    scan_parquet,
)
from bastion.adapters.openai import steps
from bastion.adapters.openai.records import RecordChecker
from bastion.gateway import jsonbody, minted, presigned
from bastion.gateway.errors import Refusal
from bastion.gateway.scan import ScanSink, decision_refusal
from bastion.gateway.spec import Opaque, ProviderSpec, RouteSpec
from bastion.gateway.spool import Spool

if TYPE_CHECKING:
    from bastion.gateway.app import Exchange, Gateway

MAX_SAMPLE = 4096
MAX_INLINE_FILE = 64 * 1024 * 1024
MAX_COMMIT_BYTES = 256 * 1024 * 1024  # a commit is read whole; the Hub keeps inline files to a few MB each
_HEX40 = re.compile(r"[0-9a-f]{40}")
REGIONS = {"us": "US", "eu": "EU"}


def hf_error(refusal: Refusal) -> tuple[str, bytes]:
    """The Hub's error body ``{"error": message}`` (``hf_raise_for_status`` shows it), plus ``code``."""
    return "application/json", json.dumps({"error": refusal.client_message, "code": refusal.kind}).encode()


def _repo(ex: Exchange) -> str:
    return f"{ex.ids['namespace']}/{ex.ids['repo']}"


def _refuse_paths_with_personal_data(gw: Gateway, paths: list[str]) -> None:
    if not paths:
        return
    scan = gw.engine.scan_record(paths, 0)
    hits = [f for f in scan.findings if f.action != "allow"]
    if hits:
        raise Refusal(
            400,
            "invalid_path",
            "a file path in the request looks like personal data; it is not forwarded",
            rule_ids=sorted({f.rule_id for f in hits}),
            entity_types=[f.entity for f in hits],
            hint="name dataset files without personal data",
        )


def _scan_text(gw: Gateway, ex: Exchange, text: str, what: str) -> tuple[str, bool]:
    """(text to forward, changed) for free text (a dataset card, a commit message); block refuses."""
    res = gw.engine.scan_record(text, 0)
    acted = [f for f in res.findings if f.action != "allow"]
    if res.action == "block":
        raise Refusal(
            403,
            "policy_block",
            f"the {what} was blocked by the gateway's data policy",
            rule_ids=sorted({f.rule_id for f in acted}),
            entity_types=[f.entity for f in acted],
            hint="remove the reported entities and commit again",
        )
    if res.classification is not None:
        gw.check_residency(ex, res.classification)
    return (res.record if isinstance(res.record, str) else text), bool(res.changed)


# -- preupload -------------------------------------------------------------------------------------------
async def preupload(gw: Gateway, ex: Exchange) -> Response:
    doc = jsonbody.plain(jsonbody.loads(await gw.read_body(ex)))
    if not isinstance(doc, dict) or set(doc) - {"files", "gitIgnore"}:
        raise Refusal(400, "invalid_request", "a preupload request is {files, gitIgnore}; another field was sent")
    files = doc.get("files")
    if not isinstance(files, list) or not 0 < len(files) <= 256:
        raise Refusal(400, "invalid_request", "'files' must list 1 to 256 files", param="files")
    out_files = []
    for i, f in enumerate(files):
        where = f"files[{i}]"
        if not isinstance(f, dict) or set(f) != {"path", "sample", "size"}:
            raise Refusal(400, "invalid_request", f"'{where}' must be {{path, sample, size}}")
        path_kind(f["path"], where)
        size = f["size"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise Refusal(400, "invalid_request", f"'{where}.size' must be a whole number of bytes")
        if size > gw.settings.max_upload_bytes:
            raise Refusal(
                413,
                "upload_too_large",
                f"{where} is larger than this gateway's limit of {gw.settings.max_upload_bytes} bytes",
                hint="split the dataset into smaller files",
            )
        out_files.append({"path": f["path"], "sample": neutral_sample(f["sample"], where), "size": size})
    _refuse_paths_with_personal_data(gw, [f["path"] for f in out_files])
    body: dict[str, Any] = {"files": out_files}
    changed = False
    if "gitIgnore" in doc:
        if not isinstance(doc["gitIgnore"], str) or len(doc["gitIgnore"]) > 1024 * 1024:
            raise Refusal(400, "invalid_request", "'gitIgnore' must be the text of a .gitignore file (at most 1 MiB)")
        body["gitIgnore"], changed = _scan_text(gw, ex, doc["gitIgnore"], ".gitignore text")
    ex.audit["files"] = len(out_files)
    decision = "redact" if changed else "allow"
    await gw.record(ex, decision, event="decision")
    reply = await gw.send(ex, content=json.dumps(body).encode(), content_type="application/json")
    return await gw.relay(ex, reply, decision, event="upstream_response", buffer=True)


# -- LFS batch and the gateway's upload URL -----------------------------------------------------------
async def lfs_batch(gw: Gateway, ex: Exchange) -> Response:
    answer = await lfs.batch(gw, ex)
    gw.metrics.requests.labels(ex.upstream_name, ex.route.name, "hold").inc()
    await gw.record(ex, "hold", event="lfs_batch_answered")
    return Response(json.dumps(answer).encode(), media_type=lfs.LFS_MIME)


async def lfs_upload(gw: Gateway, ex: Exchange) -> Response:
    await lfs.receive(gw, ex)
    return Response(b"", status_code=200)


# -- tree listing -------------------------------------------------------------------------------------------
async def tree(gw: Gateway, ex: Exchange) -> Response:
    """The tree listing; its ``Link: <...>; rel="next"`` page URL points back at the gateway, not the Hub."""
    reply = await gw.send(ex)
    resp = await gw.relay(ex, reply, "allow", event="upstream_response", buffer=True)
    link = resp.headers.get("link")
    if link:
        base = ex.upstream.config.base_url
        resp.headers["link"] = link.replace(f"<{base}/", f"<{presigned.gateway_url(ex.request, ex.upstream_name, '')}/")
    return resp


# -- commit -----------------------------------------------------------------------------------------------
def _lines(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for n, line in enumerate((ln for ln in raw.split(b"\n") if ln.strip()), start=1):
        try:
            doc = jsonbody.plain(jsonbody.loads(line))
        except Refusal:
            doc = None
        if not isinstance(doc, dict) or set(doc) != {"key", "value"} or not isinstance(doc["value"], dict):
            raise Refusal(
                400,
                "invalid_commit",
                f'line {n} of the commit is not a {{"key", "value"}} JSON object (a commit is NDJSON, one per line)',
            )
        out.append(doc)
    if not out or out[0]["key"] != "header":
        raise Refusal(400, "invalid_commit", "a commit starts with its 'header' line (summary, description)")
    return out


def _scan_inline_jsonl(gw: Gateway, ex: Exchange, data: bytes, what: str) -> tuple[bytes, str]:
    from bastion.policies import JsonlScanner

    spool = Spool(gw.spool_dir, max_bytes=gw.settings.max_upload_bytes, what=what)
    try:
        scanner = JsonlScanner(gw.engine, source="upload", max_line_bytes=gw.settings.max_line_bytes)
        sink = ScanSink(
            scanner, spool, checker=RecordChecker(lfs.record_problem, remote_images=gw.settings.remote_images)
        )
        sink.write(data)
        sink.close()
        facts = steps.scanned(gw, ex, sink, what)
        return spool.read_all(), str(facts["scan_decision"])
    finally:
        spool.discard()


def _inline(gw: Gateway, ex: Exchange, value: dict[str, Any], kind: str, where: str) -> tuple[dict[str, Any], bool]:
    """The inline file line to forward (content scanned, redacted content re-encoded) and whether it changed."""
    if set(value) - {"path", "content", "encoding"} or value.get("encoding") != "base64":
        raise Refusal(400, "invalid_commit", f"{where}: an inline file is {{path, content, encoding: 'base64'}}")
    data = b64decode(value.get("content"), f"{where}.content", limit=min(MAX_INLINE_FILE, gw.settings.max_upload_bytes))
    if kind == "jsonl":
        out, decision = _scan_inline_jsonl(gw, ex, data, f"JSONL file at {where}")
        changed = decision == "redact"
    elif kind == "parquet":
        facts = scan_parquet(gw.engine, data, where)
        refusal = decision_refusal(facts, f"Parquet file at {where}")
        if refusal is not None:
            raise refusal
        if facts["scan_decision"] == "redact":
            raise parquet_not_rewritten(where, facts)
        gw.check_residency(ex, facts["classification"])
        out, changed = data, False
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(
                400, "invalid_commit", f"{where}: README.md, .gitattributes and .gitignore must be UTF-8"
            ) from None
        new, changed = _scan_text(gw, ex, text, f"text file at {where}")
        out = new.encode("utf-8")
    line = {**value, "content": base64.b64encode(out).decode("ascii")} if changed else value
    return line, changed


async def commit(gw: Gateway, ex: Exchange) -> Response:
    ctype = ex.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-ndjson":
        raise Refusal(415, "invalid_commit", "a commit's body is NDJSON (Content-Type: application/x-ndjson)")
    raw = await gw.read_body(ex, min(MAX_COMMIT_BYTES, gw.settings.max_upload_bytes))
    lines = await anyio.to_thread.run_sync(_lines, raw)
    repo, revision = _repo(ex), ex.ids["revision"]
    header = lines[0]["value"]
    if set(header) - {"summary", "description", "parentCommit"} or not isinstance(header.get("summary"), str):
        raise Refusal(400, "invalid_commit", "the header line is {summary, description, parentCommit}")
    if not isinstance(header.get("description", ""), str):
        raise Refusal(400, "invalid_commit", "the header's 'description' must be a string")
    parent = header.get("parentCommit")
    if parent is not None and (not isinstance(parent, str) or _HEX40.fullmatch(parent) is None):
        raise Refusal(400, "invalid_commit", "the header's 'parentCommit' must be a 40-hex commit id")
    changed = False
    new_header = dict(header)
    for key in ("summary", "description"):
        if key in header:
            new_header[key], c = await anyio.to_thread.run_sync(_scan_text, gw, ex, header[key], f"commit {key}")
            changed |= c
    out: list[dict[str, Any]] = [{"key": "header", "value": new_header}]
    lfs_lines: list[tuple[int, Any]] = []
    paths: list[str] = []
    counts = {"file": 0, "lfsFile": 0, "deletedFile": 0, "deletedFolder": 0}
    for n, line in enumerate(lines[1:], start=2):
        key, value, where = line["key"], line["value"], f"commit line {n}"
        if key not in counts:
            raise Refusal(
                400,
                "invalid_commit",
                f"{where}: {'a second header' if key == 'header' else 'this key'} is not an operation the gateway "
                "forwards (file, lfsFile, deletedFile, deletedFolder)",
            )
        counts[key] += 1
        path = value.get("path")
        if key in ("deletedFile", "deletedFolder"):
            if set(value) != {"path"} or not isinstance(path, str):
                raise Refusal(400, "invalid_commit", f"{where}: a deletion is {{path}}")
            try:
                path_kind(path.rstrip("/"), where)
            except Refusal as refused:
                if refused.kind != "file_type_not_allowed":  # deleting any well-formed path is fine
                    raise
            out.append(line)
        elif key == "file":
            kind = path_kind(path, where)
            new, c = await anyio.to_thread.run_sync(_inline, gw, ex, value, kind, where)
            changed |= c
            if "scan" in ex.audit:  # per inline JSONL file: counts, rule ids, digests
                ex.audit.setdefault("inline_scans", []).append(ex.audit.pop("scan"))
            out.append({"key": "file", "value": new})
        else:
            kind = path_kind(path, where)
            if kind == "text":
                raise Refusal(
                    400, "invalid_commit", f"{where}: README.md, .gitattributes and .gitignore are committed inline"
                )
            oid, size = value.get("oid"), value.get("size")
            if set(value) - {"path", "algo", "oid", "size"} or value.get("algo", "sha256") != "sha256":
                raise Refusal(400, "invalid_commit", f"{where}: an LFS file is {{path, algo: 'sha256', oid, size}}")
            if not isinstance(oid, str) or re.fullmatch(r"[0-9a-f]{64}", oid) is None or not isinstance(size, int):
                raise Refusal(
                    400,
                    "invalid_commit",
                    f"{where}: an LFS file needs its sha256 'oid' and 'size' (copies are not routed)",
                )
            item = await lfs.admitted_object(gw, ex, repo, oid, size, kind, where)
            gw.check_residency(ex, item.classification)
            changed |= item.decision == "redact"
            lfs_lines.append((len(out), item))
            out.append(line)
        if isinstance(path, str):
            paths.append(path)
    if len(out) == 1:
        raise Refusal(400, "invalid_commit", "the commit has no operations")
    _refuse_paths_with_personal_data(gw, paths)
    ex.audit["operations"] = counts
    decision = "redact" if changed else "allow"
    await gw.record(ex, decision, event="decision")
    pushed = []
    for index, item in lfs_lines:
        oid, size = await lfs.push(gw, ex, repo, revision, item)
        out[index] = {"key": "lfsFile", "value": {**out[index]["value"], "oid": oid, "size": size}}
        pushed.append({"client_oid": item.input_sha256, "oid": oid, "decision": item.decision})
    ex.audit["lfs_pushed"] = pushed
    body = b"".join(json.dumps(line).encode() + b"\n" for line in out)
    reply = await gw.send(ex, content=body, content_type="application/x-ndjson")
    return await gw.relay(ex, reply, decision, event="upstream_response", buffer=True)


# -- create_repo ----------------------------------------------------------------------------------------
CREATE_FIELDS = frozenset({"name", "organization", "visibility", "private", "type", "resourceGroupId", "region"})


async def repos_create(gw: Gateway, ex: Exchange) -> Response:

    raw = await gw.read_body(ex)
    doc = jsonbody.plain(jsonbody.loads(raw))
    if not isinstance(doc, dict) or set(doc) - CREATE_FIELDS:
        raise Refusal(
            400,
            "invalid_request",
            f"create_repo accepts the fields {', '.join(sorted(CREATE_FIELDS))}; another was sent",
        )
    if doc.get("type") != "dataset":
        raise Refusal(403, "repo_type_not_allowed", REPO_TYPE_REFUSED, param="type", hint="use repo_type='dataset'")
    region = doc.get("region")
    if region is not None and REGIONS.get(str(region).lower()) != ex.upstream.jurisdiction:
        raise Refusal(
            403,
            "residency",
            f"the repository's storage region does not match this upstream's jurisdiction ({ex.upstream.jurisdiction})",
            param="region",
            hint="leave 'region' out, or use an upstream configured for that region's jurisdiction",
        )
    scan = await gw.scan_json(ex, raw, "create_repo request")
    if scan.classification is not None:
        gw.check_residency(ex, scan.classification)
    decision = "redact" if scan.changed else "allow"
    await gw.record(ex, decision, event="decision")
    reply = await gw.send(ex, content=scan.body, content_type="application/json")
    return await gw.relay(ex, reply, decision, event="upstream_response", buffer=True)


# -- refused routes -------------------------------------------------------------------------------------
REPO_TYPE_REFUSED = (
    "this gateway forwards uploads to Hugging Face dataset repositories only; model, Space and kernel "
    "repositories are refused, and nothing was forwarded"
)
XET_REFUSED = (
    "Xet uploads are refused: Xet sends content-defined chunks of files to a storage service, which the gateway "
    "cannot scan as records, so nothing was forwarded"
)


async def refuse(gw: Gateway, ex: Exchange) -> Response:
    if ex.route.name == "datasets.xet_write_token":
        raise Refusal(
            403,
            "xet_not_allowed",
            XET_REFUSED,
            hint="set HF_HUB_DISABLE_XET=1 so huggingface_hub uploads large files over LFS, which the gateway scans",
        )
    raise Refusal(403, "repo_type_not_allowed", REPO_TYPE_REFUSED, hint="use repo_type='dataset'")


# -- the spec ---------------------------------------------------------------------------------------------
NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
BOOL = r"true|false|True|False|1|0"
DS = "/api/datasets/{namespace}/{repo}"
CREATE_PR = (Opaque("create_pr", r"1|true|True"),)
TREE_QUERY = (
    Opaque("recursive", BOOL),
    Opaque("expand", BOOL),
    Opaque("cursor", r"[A-Za-z0-9_=+/.-]{1,512}"),
    Opaque("limit", r"[0-9]{1,5}"),
)
INFO_QUERY = (Opaque("blobs", BOOL), Opaque("expand", r"[A-Za-z]{1,40}"))


def issued_commits(doc: Any) -> Iterator[str]:
    """The commit ids an answer names (a dataset's ``sha``, a commit's ``commitOid``): a client pins a revision
    with one, and on their own 1.3 % of them hold a digit run that passes a card or id number check."""
    for key in ("sha", "commitOid"):
        value = doc.get(key) if isinstance(doc, dict) else None
        if isinstance(value, str) and _HEX40.fullmatch(value) is not None:
            yield value


SPEC = ProviderSpec(
    name="hf_hub",
    ids={
        "namespace": NAME,
        "repo": NAME,
        "revision": r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}",  # a branch name; refs/pr/N and other refs are not routed
        "tree_path": r"[A-Za-z0-9_.=+@, -]{1,255}",
        "kind": r"models|spaces|kernels",
        "lfs_kind": r"spaces|kernels",
        "object_id": minted.shape("hflfs_", 32),
        "ticket": presigned.TICKET,
    },
    routes=(
        RouteSpec("GET", "/api/whoami-v2", "whoami", default="on"),
        RouteSpec("GET", DS, "datasets.info", query=INFO_QUERY, default="on", issued=issued_commits),
        RouteSpec(
            "GET", f"{DS}/revision/{{revision}}", "datasets.info", query=INFO_QUERY, default="on", issued=issued_commits
        ),
        RouteSpec("GET", f"{DS}/tree/{{revision}}", "datasets.tree", step="tree", query=TREE_QUERY, default="on"),
        RouteSpec(
            "GET", f"{DS}/tree/{{revision}}/{{tree_path}}", "datasets.tree", step="tree", query=TREE_QUERY, default="on"
        ),
        RouteSpec("POST", "/api/repos/create", "repos.create", step="repos.create", body="json", default="on"),
        RouteSpec("POST", "/api/validate-yaml", "validate_yaml", body="json", default="on"),
        RouteSpec(
            "POST",
            f"{DS}/preupload/{{revision}}",
            "datasets.preupload",
            step="preupload",
            body="json",
            query=CREATE_PR,
            default="always",
        ),
        RouteSpec(
            "POST",
            "/datasets/{namespace}/{repo}.git/info/lfs/objects/batch",
            "datasets.lfs_batch",
            step="lfs.batch",
            body="json",
            headers=(Opaque("accept", r"[A-Za-z0-9/.+*,;= -]{1,128}", forward=False),),
            default="always",
        ),
        RouteSpec(
            "PUT",
            lfs.UPLOAD_PATH,
            "datasets.lfs_upload",
            step="lfs.upload",
            body="raw",
            default="always",
            capability=True,
        ),
        RouteSpec(
            "POST",
            f"{DS}/commit/{{revision}}",
            "datasets.commit",
            step="commit",
            body="raw",
            query=CREATE_PR,
            default="always",
            issued=issued_commits,
        ),
        RouteSpec(
            "GET", f"{DS}/xet-write-token/{{revision}}", "datasets.xet_write_token", step="refuse", default="always"
        ),
        RouteSpec(
            "POST",
            "/api/{kind}/{namespace}/{repo}/preupload/{revision}",
            "repos.preupload",
            step="refuse",
            body="raw",
            default="always",
        ),
        RouteSpec(
            "POST",
            "/api/{kind}/{namespace}/{repo}/commit/{revision}",
            "repos.commit",
            step="refuse",
            body="raw",
            default="always",
        ),
        RouteSpec(
            "GET",
            "/api/{kind}/{namespace}/{repo}/xet-write-token/{revision}",
            "repos.xet_write_token",
            step="refuse",
            default="always",
        ),
        RouteSpec(
            "POST",
            "/{namespace}/{repo}.git/info/lfs/objects/batch",
            "models.lfs_batch",
            step="refuse",
            body="raw",
            default="always",
        ),
        RouteSpec(
            "POST",
            "/{lfs_kind}/{namespace}/{repo}.git/info/lfs/objects/batch",
            "repos.lfs_batch",
            step="refuse",
            body="raw",
            default="always",
        ),
    ),
    credentials={"authorization": "bearer"},
    held_key="bearer",
    errors=hf_error,
    steps={
        "preupload": preupload,
        "lfs.batch": lfs_batch,
        "lfs.upload": lfs_upload,
        "commit": commit,
        "tree": tree,
        "repos.create": repos_create,
        "refuse": refuse,
    },
    jurisdictions={"huggingface.co": "US"},
    host_patterns=(r"huggingface\.co",),
)

__all__ = ["SPEC", "hf_error"]
