"""Hugging Face Hub dataset uploads through the gateway with the official ``huggingface_hub`` client (2.4.x),
only its ``endpoint`` pointed at the gateway, against recording stand-ins on 127.0.0.1: the Hub (preupload,
LFS batch + verify + multipart completion, NDJSON commit, repo info, tree, create_repo) and, as a second
server, the LFS object store that the Hub's presigned URLs point to (S3-style PUTs with ETags).

Xet is switched off in the client (``HF_HUB_DISABLE_XET``) except in the test that shows the gateway
refusing it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import math
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gw_support import CLIENT_TOKEN, EMAIL, IBAN, PROVIDER_KEY, AuditLog, chat, jsonl, start_gateway
from gw_upstream import Received
from huggingface_hub import CommitOperationAdd, HfApi, constants
from huggingface_hub.errors import HfHubHTTPError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.adapters import get_provider
from bastion.adapters.hf_hub.data import path_kind
from bastion.gateway.app import Gateway
from bastion.gateway.errors import Refusal
from bastion.gateway.inbound import check_opaque
from bastion.gateway.serve import ServerThread
from bastion.policies import PolicyEngine

HF_TOKEN = "hf_SECRETclientTOKEN0123456789abcdefABCD"
REPO = "acme/train-data"
LFS_THRESHOLD = 4096  # the stand-in Hub answers uploadMode "lfs" above this (the real Hub: 10 MB, or binary)
MULTIPART_THRESHOLD = 96 * 1024  # ... and a multipart upload action above this
CHUNK = 64 * 1024


def _hf_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class LfsStore:
    """An S3-style object store: presigned PUTs (whole objects and parts), ETags."""

    received: list[Received] = field(default_factory=list)
    objects: dict[str, bytes] = field(default_factory=dict)
    parts: dict[tuple[str, int], bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    fail_next: int = 0

    def app(self) -> Starlette:
        async def put(request: Request) -> Response:
            body = await request.body()
            rec = Received("PUT", request.url.path, request.url.query, dict(request.headers), body)
            with self.lock:
                self.received.append(rec)
                if self.fail_next:
                    self.fail_next -= 1
                    return Response(b"<Error><Code>SlowDown</Code></Error>", status_code=503)
            if request.query_params.get("X-Amz-Signature") != "sig":
                return Response(b"<Error><Code>AccessDenied</Code></Error>", status_code=403)
            oid = request.path_params["oid"]
            part = request.query_params.get("partNumber")
            if part is None:
                if _sha(body) != oid:
                    return Response(b"<Error><Code>BadDigest</Code></Error>", status_code=400)
                self.objects[oid] = body
            else:
                self.parts[(oid, int(part))] = body
            return Response(b"", headers={"ETag": f'"{hashlib.md5(body).hexdigest()}"'})

        return Starlette(routes=[Route("/bucket/{oid}", put, methods=["PUT"])])


@dataclass
class FakeHub:
    """Records every request; repos, files and commits in memory; LFS objects in the store."""

    store: LfsStore
    store_url: str = ""
    url: str = ""
    received: list[Received] = field(default_factory=list)
    repos: dict[str, dict[str, Any]] = field(default_factory=lambda: {REPO: {}})
    commits: list[list[dict[str, Any]]] = field(default_factory=list)
    #: the commit id the info route names as the repository's head
    head: str = "0" * 40

    def app(self) -> Starlette:
        async def record(request: Request) -> Received:
            rec = Received(request.method, request.url.path, request.url.query, dict(request.headers),
                           await request.body())  # fmt: skip
            self.received.append(rec)
            return rec

        def repo_of(request: Request) -> str:
            return f"{request.path_params['ns']}/{request.path_params['repo']}"

        async def whoami(request: Request) -> Response:
            await record(request)
            return JSONResponse({"type": "user", "name": "alice", "orgs": []})

        async def info(request: Request) -> Response:
            await record(request)
            repo = repo_of(request)
            if repo not in self.repos:
                return _hf_error(404, "Repository not found")
            files = [{"rfilename": p} for p in self.repos[repo]]
            rev = request.path_params.get("rev", self.head)
            if rev not in (self.head, "main"):
                return _hf_error(404, "Revision not found")
            return JSONResponse({"id": repo, "sha": self.head, "private": True, "siblings": files})

        async def tree(request: Request) -> Response:
            await record(request)
            files = sorted(self.repos.get(repo_of(request), {}).items())
            start = int(request.query_params.get("cursor", "0"))  # pages of 2, cursor-based like the Hub's
            page = [
                {"type": "file", "path": p, "size": len(c), "oid": _sha(c)[:40]} for p, c in files[start : start + 2]
            ]
            headers = {}
            if start + 2 < len(files):
                nxt = f"{self.url}{request.url.path}?recursive=true&expand=false&cursor={start + 2}"
                headers["Link"] = f'<{nxt}>; rel="next"'
            return JSONResponse(page, headers=headers)

        async def create(request: Request) -> Response:
            rec = await record(request)
            body = json.loads(rec.body)
            repo = f"{body.get('organization') or 'alice'}/{body['name']}"
            self.repos.setdefault(repo, {})
            return JSONResponse({"url": f"{self.url}/datasets/{repo}", "name": repo, "id": "r1"})

        async def preupload(request: Request) -> Response:
            rec = await record(request)
            files = json.loads(rec.body)["files"]
            out = []
            for f in files:
                binary = b"\x00" in base64.b64decode(f["sample"])
                lfs = f["size"] > LFS_THRESHOLD or binary or f["path"].endswith(".parquet")
                out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
            return JSONResponse({"files": out, "commitOid": "0" * 40})

        async def batch(request: Request) -> Response:
            rec = await record(request)
            doc = json.loads(rec.body)
            assert "xet" not in doc["transfers"]
            objs = []
            for o in doc["objects"]:
                oid, size = o["oid"], o["size"]
                if oid in self.store.objects:
                    objs.append({"oid": oid, "size": size})
                    continue
                signed = f"{self.store_url}/bucket/{oid}?X-Amz-Signature=sig"
                verify = {
                    "href": f"{self.url}/{request.url.path.split('.git/')[0].lstrip('/')}.git/info/lfs/objects/verify"
                }
                if size > MULTIPART_THRESHOLD:
                    header: dict[str, Any] = {"chunk_size": str(CHUNK)}
                    for n in range(1, math.ceil(size / CHUNK) + 1):
                        header[str(n)] = f"{signed}&partNumber={n}&uploadId=u1"
                    upload = {"href": f"{self.url}/lfs-complete/{oid}?uploadId=u1", "header": header}
                else:
                    upload = {"href": signed}
                objs.append({"oid": oid, "size": size, "authenticated": True,
                             "actions": {"upload": upload, "verify": verify}})  # fmt: skip
            return JSONResponse({"transfer": "basic", "objects": objs, "hash_algo": "sha256"})

        async def complete(request: Request) -> Response:
            rec = await record(request)
            oid = request.path_params["oid"]
            doc = json.loads(rec.body)
            data = b"".join(self.store.parts[(oid, p["partNumber"])] for p in doc["parts"])
            if _sha(data) != oid:
                return _hf_error(400, "assembled object does not match its oid")
            self.store.objects[oid] = data
            return JSONResponse({})

        async def verify(request: Request) -> Response:
            rec = await record(request)
            doc = json.loads(rec.body)
            data = self.store.objects.get(doc["oid"])
            if data is None or len(data) != doc["size"]:
                return _hf_error(404, "object not found")
            return JSONResponse({})

        async def commit(request: Request) -> Response:
            rec = await record(request)
            repo = repo_of(request)
            if repo not in self.repos:
                return _hf_error(404, "Repository not found")
            lines = [json.loads(line) for line in rec.body.splitlines() if line.strip()]
            for line in lines[1:]:
                v = line["value"]
                if line["key"] == "file":
                    self.repos[repo][v["path"]] = base64.b64decode(v["content"])
                elif line["key"] == "lfsFile":
                    data = self.store.objects.get(v["oid"])
                    if data is None or len(data) != v["size"]:
                        return _hf_error(400, "LFS object not found in storage")
                    self.repos[repo][v["path"]] = data
            self.commits.append(lines)
            oid = secrets.token_hex(20)
            return JSONResponse({"commitUrl": f"{self.url}/datasets/{repo}/commit/{oid}", "commitOid": oid,
                                 "pullRequestUrl": None})  # fmt: skip

        async def validate_yaml(request: Request) -> Response:
            rec = await record(request)
            content = json.loads(rec.body)["content"]
            return JSONResponse({"errors": [] if content.startswith("---") else [{"message": "no metadata"}],
                                 "warnings": []})  # fmt: skip

        ds = "/api/datasets/{ns}/{repo}"
        return Starlette(
            routes=[
                Route("/api/whoami-v2", whoami),
                Route("/api/repos/create", create, methods=["POST"]),
                Route("/api/validate-yaml", validate_yaml, methods=["POST"]),
                Route(ds, info),
                Route(ds + "/revision/{rev}", info),
                Route(ds + "/tree/{rev}", tree),
                Route(ds + "/preupload/{rev}", preupload, methods=["POST"]),
                Route(ds + "/commit/{rev}", commit, methods=["POST"]),
                Route("/datasets/{ns}/{repo}.git/info/lfs/objects/batch", batch, methods=["POST"]),
                Route("/datasets/{ns}/{repo}.git/info/lfs/objects/verify", verify, methods=["POST"]),
                Route("/lfs-complete/{oid}", complete, methods=["POST"]),
            ]
        )


@dataclass
class HEnv(AuditLog):
    hub: FakeHub
    store: LfsStore
    gateway: Gateway
    url: str
    state_dir: Path

    def api(self, token: str = HF_TOKEN, upstream: str = "hf") -> HfApi:
        return HfApi(endpoint=f"{self.url}/{upstream}", token=token)

    def mark(self) -> tuple[int, int, int]:
        return len(self.hub.received), len(self.store.received), len(self.hub.commits)

    def since(self, mark: tuple[int, int, int]) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.hub.received[mark[0] :]] + [
            f"STORE {r.path}" for r in self.store.received[mark[1] :]
        ]

    def everything_sent(self) -> bytes:
        return b"".join(r.body + r.query.encode() for r in [*self.hub.received, *self.store.received])


def _start(tmp: Path, policy: Any, upstreams: dict[str, Any], **settings: Any) -> tuple[Gateway, ServerThread]:
    return start_gateway(tmp, policy, upstreams, **{"max_upload_bytes": 1024 * 1024, **settings})


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, policy: Any) -> Iterator[HEnv]:
    store = LfsStore()
    fake = FakeHub(store)
    with ServerThread(store.app()) as st, ServerThread(fake.app()) as up:
        fake.url, fake.store_url = up.url, st.url
        tmp = tmp_path_factory.mktemp("hf")
        hf = {"base_url": up.url, "adapter": "hf_hub", "hosts": {"lfs_store": st.url}}
        nostore = {"base_url": up.url, "adapter": "hf_hub", "jurisdiction": "US"}  # the store's origin not named
        gw, srv = _start(
            tmp,
            policy,
            {"hf": {**hf, "jurisdiction": "US"}, "hf_xx": {**hf, "jurisdiction": "XX"}, "hf_nostore": nostore},
        )
        try:
            yield HEnv(fake, store, gw, srv.url, tmp)
        finally:
            srv.stop()


@pytest.fixture(autouse=True)
def _no_xet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        constants, "HF_HUB_OFFLINE", False
    )  # tests/conftest.py sets offline; these only reach 127.0.0.1
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)


def upload(env: HEnv, data: bytes, path: str = "data/train.jsonl", **kw: Any) -> Any:
    kw.setdefault("repo_type", "dataset")
    return env.api().upload_file(path_or_fileobj=data, path_in_repo=path, repo_id=REPO, **kw)


def refused(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HfHubHTTPError) as info:
        call()
    resp = info.value.response
    assert resp is not None
    return resp.status_code, resp.json()


def last_commit_line(env: HEnv, key: str) -> dict[str, Any]:
    return [line["value"] for line in env.hub.commits[-1] if line["key"] == key][-1]


def big(*records: Any, size: int) -> bytes:
    """JSONL over ``size`` bytes: the given records, then filler records."""
    out = jsonl(*records)
    n = 0
    while len(out) <= size:
        out += jsonl(chat(f"filler question {n} about the weather", "fine"))
        n += 1
    return out


# -- inline (regular) files ---------------------------------------------------------------------------
def test_small_clean_jsonl_is_committed_inline_byte_identical(hub: HEnv) -> None:
    data = jsonl(chat("What is the capital of France?", "Paris."), {"text": "plain record", "label": 1})
    m = hub.mark()
    info = upload(hub, data)
    assert info.oid and hub.since(m) == [
        f"POST /api/datasets/{REPO}/preupload/main",
        f"POST /api/datasets/{REPO}/commit/main",
    ]
    line = last_commit_line(hub, "file")
    assert base64.b64decode(line["content"]) == data and line["path"] == "data/train.jsonl"
    rec = hub.hub.received[-1]
    assert rec.headers["authorization"] == f"Bearer {HF_TOKEN}"
    assert rec.headers["content-type"] == "application/x-ndjson"
    # the preupload sample the Hub saw is the gateway's (same length, no client bytes)
    sample = base64.b64decode(json.loads(hub.hub.received[m[0]].body)["files"][0]["sample"])
    assert sample == b" " * min(len(data), 512)


def test_personal_data_in_an_inline_file_and_the_commit_message_is_redacted(hub: HEnv) -> None:
    data = jsonl(chat(f"write to {EMAIL}"), chat("nothing here"))
    upload(hub, data, commit_message=f"data from {EMAIL}")
    sent = base64.b64decode(last_commit_line(hub, "file")["content"])
    assert EMAIL.encode() not in sent and b"nothing here" in sent and len(sent.splitlines()) == 2
    assert EMAIL not in json.dumps(hub.hub.commits[-1][0])
    entry = [e["data"] for e in hub.audit_entries() if e["data"]["route"] == "datasets.commit"][-1]
    assert entry["decision"] == "redact" and entry["outcome"] == "forwarded"
    assert EMAIL not in hub.audit_text()


def test_blocked_inline_file_refuses_the_commit(hub: HEnv) -> None:
    m = hub.mark()
    status, body = refused(lambda: upload(hub, jsonl(chat("hi"), chat(f"my IBAN is {IBAN}"))))
    assert status == 403 and body["code"] == "policy_block" and "record(s): 2" in body["error"]
    assert IBAN not in body["error"] and len(hub.hub.commits) == m[2]
    assert hub.since(m) == [f"POST /api/datasets/{REPO}/preupload/main"]  # the preupload carried no data
    assert IBAN.encode() not in hub.everything_sent() and IBAN not in hub.audit_text()


def test_readme_is_scanned_as_text_and_other_file_types_are_refused(hub: HEnv) -> None:
    card = f"---\nlicense: mit\n---\n# Data\nContact {EMAIL}\n".encode()
    upload(hub, card, path="README.md")
    sent = base64.b64decode(last_commit_line(hub, "file")["content"])
    assert EMAIL.encode() not in sent and sent.startswith(b"---\nlicense: mit")
    m = hub.mark()
    status, body = refused(lambda: upload(hub, b"a,b\n1,2\n", path="data/train.csv"))
    assert status == 403 and body["code"] == "file_type_not_allowed" and "'.csv'" in body["error"]
    assert hub.since(m) == []


# -- LFS ------------------------------------------------------------------------------------------------
def test_clean_lfs_jsonl_reaches_the_store_byte_identical(hub: HEnv) -> None:
    data = big(chat("clean large"), size=LFS_THRESHOLD + 10)
    m = hub.mark()
    upload(hub, data, path="data/large.jsonl")
    assert hub.store.objects[_sha(data)] == data
    line = last_commit_line(hub, "lfsFile")
    assert line == {"path": "data/large.jsonl", "algo": "sha256", "oid": _sha(data), "size": len(data)}
    # the client's LFS batch never reached the Hub: the gateway answered it, and sent its own at commit
    batches = [r for r in hub.hub.received[m[0] :] if r.path.endswith("/objects/batch")]
    assert len(batches) == 1 and json.loads(batches[0].body)["objects"] == [{"oid": _sha(data), "size": len(data)}]
    assert all("authorization" not in r.headers for r in hub.store.received[m[1] :])
    assert (
        next(r for r in hub.hub.received[m[0] :] if r.path.endswith("/verify"))
        .headers["authorization"]
        .endswith(HF_TOKEN)
    )


def test_personal_data_in_an_lfs_file_is_redacted_and_the_commit_names_the_redacted_object(hub: HEnv) -> None:
    data = big(chat(f"mail {EMAIL} please"), size=LFS_THRESHOLD + 10)
    upload(hub, data, path="data/pii.jsonl")
    line = last_commit_line(hub, "lfsFile")
    stored = hub.store.objects[line["oid"]]
    assert line["oid"] == _sha(stored) != _sha(data) and line["size"] == len(stored)
    assert EMAIL.encode() not in stored and stored.count(b"\n") == data.count(b"\n")
    assert _sha(data) not in hub.store.objects and EMAIL.encode() not in hub.everything_sent()
    assert hub.hub.repos[REPO]["data/pii.jsonl"] == stored
    assert EMAIL not in hub.audit_text()
    # held bytes are encrypted at rest and spools are gone: the raw file is nowhere under the state dir
    assert all(b"mail " + EMAIL.encode() not in p.read_bytes() for p in hub.state_dir.rglob("*") if p.is_file())


def test_multipart_lfs_upload_goes_part_by_part(hub: HEnv) -> None:
    data = big(chat(f"large and personal {EMAIL}"), size=MULTIPART_THRESHOLD + CHUNK)
    m = hub.mark()
    upload(hub, data, path="data/huge.jsonl")
    line = last_commit_line(hub, "lfsFile")
    stored = hub.store.objects[line["oid"]]
    assert EMAIL.encode() not in stored and len(stored) == line["size"]
    puts = [r for r in hub.store.received[m[1] :] if "partNumber" in r.query]
    assert len(puts) == math.ceil(len(stored) / CHUNK) and all(len(p.body) <= CHUNK for p in puts)
    assert any(r.path.startswith("/lfs-complete/") for r in hub.hub.received[m[0] :])


def test_blocked_lfs_file_never_arrives_anywhere(hub: HEnv) -> None:
    data = big(chat(f"IBAN {IBAN}"), size=LFS_THRESHOLD + 10)
    m = hub.mark()
    with pytest.raises(Exception) as info:
        upload(hub, data, path="data/blocked.jsonl")
    cause = info.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response is not None
    assert cause.response.status_code == 403 and cause.response.json()["code"] == "policy_block"
    assert hub.since(m) == [f"POST /api/datasets/{REPO}/preupload/main"] and len(hub.hub.commits) == m[2]
    assert IBAN.encode() not in hub.everything_sent() and IBAN not in hub.audit_text()


def _commit_raw(hub: HEnv, lines: list[dict[str, Any]] | bytes, token: str = HF_TOKEN, **kw: Any) -> httpx.Response:
    body = lines if isinstance(lines, bytes) else b"".join(json.dumps(x).encode() + b"\n" for x in lines)
    headers = {"authorization": f"Bearer {token}", "content-type": "application/x-ndjson", **kw.pop("headers", {})}
    return httpx.post(f"{hub.url}/hf/api/datasets/{REPO}/commit/main", content=body, headers=headers, **kw)


HEADER = {"key": "header", "value": {"summary": "add data", "description": ""}}


def test_a_commit_naming_an_unscanned_lfs_object_is_refused(hub: HEnv) -> None:
    # an object the Hub has (uploaded some other way) but the gateway never scanned
    outside = b'{"text": "uploaded around the gateway"}\n'
    hub.store.objects[_sha(outside)] = outside
    # and one another client uploaded through the gateway
    data = big(chat("someone else's"), size=LFS_THRESHOLD + 10)
    upload(hub, data, path="data/other.jsonl")
    m = hub.mark()
    for oid, size in ((_sha(outside), len(outside)), (_sha(data), len(data))):
        lfs_line = {"key": "lfsFile", "value": {"path": "data/x.jsonl", "algo": "sha256", "oid": oid, "size": size}}
        r = _commit_raw(hub, [HEADER, lfs_line], token="hf_anotherCLIENTtoken000000000000000000")
        assert r.status_code == 403 and r.json()["code"] == "unscanned_file", r.text
    assert hub.since(m) == [] and len(hub.hub.commits) == m[2]
    # the same object under a path of another kind is refused too
    lfs_line = {
        "key": "lfsFile",
        "value": {"path": "data/x.parquet", "algo": "sha256", "oid": _sha(data), "size": len(data)},
    }
    r = _commit_raw(hub, [HEADER, lfs_line])
    assert r.status_code == 400 and "scanned as jsonl" in r.json()["error"]


def test_parquet_lfs_is_allowed_when_clean_and_refused_when_it_needs_redaction(hub: HEnv) -> None:
    def parquet(rows: list[dict[str, Any]]) -> bytes:
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows), buf)
        return buf.getvalue()

    clean = parquet([{"prompt": f"q{i}", "completion": "a"} for i in range(50)])
    upload(hub, clean, path="data/train.parquet")
    assert hub.store.objects[_sha(clean)] == clean
    assert last_commit_line(hub, "lfsFile")["oid"] == _sha(clean)
    m = hub.mark()
    with pytest.raises(Exception) as info:
        upload(hub, parquet([{"prompt": f"mail {EMAIL}", "completion": "a"}]), path="data/pii.parquet")
    cause = info.value.__cause__
    assert isinstance(cause, HfHubHTTPError) and cause.response is not None
    assert cause.response.status_code == 403 and cause.response.json()["code"] == "redaction_not_supported"
    assert len(hub.hub.commits) == m[2] and EMAIL.encode() not in hub.everything_sent()


def test_lfs_put_with_bytes_that_do_not_match_the_oid_is_refused(hub: HEnv) -> None:
    data = big(chat("honest"), size=LFS_THRESHOLD + 10)
    r = httpx.post(
        f"{hub.url}/hf/datasets/{REPO}.git/info/lfs/objects/batch",
        json={
            "operation": "upload",
            "transfers": ["basic"],
            "objects": [{"oid": _sha(data), "size": len(data)}],
            "hash_algo": "sha256",
        },
        headers={"authorization": f"Bearer {HF_TOKEN}-3"},
    )
    assert r.status_code == 200 and r.json()["transfer"] == "basic"
    href = r.json()["objects"][0]["actions"]["upload"]["href"]
    assert href.startswith(f"{hub.url}/hf/bastion-lfs/")
    swapped = data.replace(b"honest", b"HONEST")
    r = httpx.put(href, content=swapped)
    assert r.status_code == 400 and r.json()["code"] == "checksum_mismatch"
    r = httpx.put(href[:-4] + ("aaaa" if not href.endswith("aaaa") else "bbbb"), content=data)
    assert r.status_code == 404 and r.json()["code"] == "upload_not_found"
    assert httpx.put(href, content=data).status_code == 200
    assert href.rsplit("/", 1)[1] not in hub.audit_text()  # the ticket is a capability: never logged


# -- what is refused -----------------------------------------------------------------------------------
def test_xet_is_refused_with_a_clear_reason(hub: HEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    r = httpx.get(
        f"{hub.url}/hf/api/datasets/{REPO}/xet-write-token/main", headers={"authorization": f"Bearer {HF_TOKEN}"}
    )
    assert (
        r.status_code == 403 and r.json()["code"] == "xet_not_allowed" and "HF_HUB_DISABLE_XET=1" in r.json()["error"]
    )
    r = httpx.post(
        f"{hub.url}/hf/datasets/{REPO}.git/info/lfs/objects/batch",
        json={"operation": "upload", "transfers": ["xet"], "objects": [{"oid": "a" * 64, "size": 5}]},
        headers={"authorization": f"Bearer {HF_TOKEN}"},
    )
    assert r.status_code == 400 and r.json()["code"] == "transfer_not_allowed"


def test_model_and_space_uploads_are_refused(hub: HEnv) -> None:
    m = hub.mark()
    for repo_type in ("model", "space"):
        status, body = refused(lambda rt=repo_type: upload(hub, jsonl(chat("x")), repo_type=rt))
        assert status == 403 and body["code"] == "repo_type_not_allowed" and "dataset" in body["error"]
    status, body = refused(lambda: hub.api().create_repo("acme/weights", repo_type="model"))
    assert status == 403 and body["code"] == "repo_type_not_allowed"
    r = httpx.post(
        f"{hub.url}/hf/acme/weights.git/info/lfs/objects/batch", json={}, headers={"authorization": "Bearer hf_x"}
    )
    assert r.status_code == 403 and r.json()["code"] == "repo_type_not_allowed"
    assert hub.since(m) == []


_H = b'{"key": "header", "value": {"summary": "x"}}\n'


def _file(path: str, content: str) -> bytes:
    return json.dumps({"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}}).encode()


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (_H + b'{"key": "file", "value": \n', "line 2"),
        (_file("a.jsonl", "") + b"\n", "starts with"),
        (_H + b'{"key": "copyFile", "value": {"path": "a.jsonl"}}\n', "not an operation"),
        (_H + _file("a.jsonl", "!!"), "not valid base64"),
        (_H + _file("../a.jsonl", ""), "relative path"),
        (_H + b'{"key": "lfsFile", "value": {"path": "a.jsonl", "algo": "sha256", "oid": "abc"}}', "sha256 'oid'"),
        (_H + _file("a.jsonl", base64.b64encode(b'{"a": 1}\n{').decode()), "record 2"),
        (b'{"key": "header", "value": {"summary": "x", "summary": "y"}}\n', "line 1"),
    ],
)
def test_malformed_commits_get_a_clear_error(hub: HEnv, body: bytes, where: str) -> None:
    m = hub.mark()
    r = _commit_raw(hub, body)
    assert r.status_code == 400 and where in r.json()["error"], r.text
    assert hub.since(m) == []


def test_oversize_and_wrong_content_type_are_refused(hub: HEnv) -> None:
    m = hub.mark()
    status, body = refused(lambda: upload(hub, b'{"a": 1}\n' * 200_000, path="data/big.jsonl"))
    assert status == 413 and body["code"] == "upload_too_large"
    r = _commit_raw(hub, b"x" * (1024 * 1024 + 1))
    assert r.status_code == 413
    r = _commit_raw(hub, [HEADER], headers={"content-type": "application/json"})
    assert r.status_code == 415
    assert hub.since(m) == []


def test_token_is_never_logged_or_stored(hub: HEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    upload(hub, big(chat("secret token test"), size=LFS_THRESHOLD + 10), path="data/tok.jsonl")
    refused(lambda: upload(hub, jsonl(chat(f"IBAN {IBAN}"))))
    assert HF_TOKEN not in caplog.text and HF_TOKEN not in hub.audit_text()
    assert all(HF_TOKEN.encode() not in p.read_bytes() for p in hub.state_dir.rglob("*") if p.is_file())
    assert all("authorization" not in r.headers for r in hub.store.received)


# -- pass-through -----------------------------------------------------------------------------------------
def test_repo_info_listing_and_create_repo_pass_through(hub: HEnv) -> None:
    api = hub.api()
    url = api.create_repo("acme/new-set", repo_type="dataset", private=True)
    assert url.repo_id == "acme/new-set" and "acme/new-set" in hub.hub.repos
    ops = [CommitOperationAdd(f"data/part-{i}.jsonl", jsonl(chat(f"listed {i}"))) for i in range(5)]
    api.create_commit("acme/new-set", ops, commit_message="five parts", repo_type="dataset")
    m = hub.mark()
    listed = api.list_repo_files("acme/new-set", repo_type="dataset")
    assert listed == [f"data/part-{i}.jsonl" for i in range(5)]
    # every page came through the gateway (the Hub's Link URL was rewritten to point at it)
    pages = [r for r in hub.hub.received[m[0] :] if "/tree/" in r.path]
    assert len(pages) == math.ceil(len(listed) / 2) and pages[-1].query.endswith(f"cursor={2 * (len(pages) - 1)}")
    assert all("hf_hub/" not in r.headers.get("user-agent", "") for r in pages)  # none sent by the client
    assert api.dataset_info(REPO).id == REPO
    assert api.whoami()["name"] == "alice"
    status, body = refused(lambda: api.create_repo("acme/eu-set", repo_type="dataset", region="eu"))
    assert status == 403 and body["code"] == "residency"


def test_personal_data_to_a_jurisdiction_the_policy_forbids_is_refused(hub: HEnv) -> None:
    m = hub.mark()
    api = hub.api(upstream="hf_xx")
    with pytest.raises(HfHubHTTPError) as info:
        api.upload_file(path_or_fileobj=jsonl(chat("staff EMP-123456 asked")), path_in_repo="d.jsonl", repo_id=REPO,
                        repo_type="dataset")  # fmt: skip
    assert info.value.response is not None and info.value.response.json()["code"] == "residency"
    assert [p for p in hub.since(m) if "/commit/" in p] == []


def test_gateway_held_token_replaces_the_client_token(
    tmp_path: Path, policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_TEST_HF_TOKEN", PROVIDER_KEY)
    store = LfsStore()
    fake = FakeHub(store)
    with ServerThread(store.app()) as st, ServerThread(fake.app()) as up:
        fake.url, fake.store_url = up.url, st.url
        gw, srv = _start(
            tmp_path,
            policy,
            {
                "hf": {
                    "base_url": up.url,
                    "adapter": "hf_hub",
                    "hosts": {"lfs_store": st.url},
                    "jurisdiction": "US",
                    "auth": {"mode": "replace", "api_key_env": "BASTION_TEST_HF_TOKEN"},
                }
            },
            allowed_clients=["sha256:" + hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest()[:16]],
        )
        try:
            env = HEnv(fake, store, gw, srv.url, tmp_path)
            env.api(token=CLIENT_TOKEN).upload_file(
                path_or_fileobj=big(chat("held"), size=LFS_THRESHOLD + 10), path_in_repo="d.jsonl", repo_id=REPO,
                repo_type="dataset",
            )  # fmt: skip
            assert fake.received[-1].headers["authorization"] == f"Bearer {PROVIDER_KEY}"
            assert len(fake.commits) == 1 and PROVIDER_KEY not in env.audit_text()
            status, body = refused(lambda: env.api(token=HF_TOKEN).dataset_info(REPO))
            assert status == 401 and body["code"] == "client_not_allowed"
        finally:
            srv.stop()


def test_spec_knows_the_host_and_the_path_rule() -> None:
    spec = get_provider("hf_hub")
    assert spec.jurisdiction_for("https://huggingface.co") == "US"
    assert {"datasets.preupload", "datasets.commit", "datasets.lfs_batch", "datasets.lfs_upload"} <= spec.names
    assert path_kind("data/train-00000-of-00001.parquet", "f") == "parquet" and path_kind("README.md", "f") == "text"
    for bad in ("docs/README.md", "a/../b.jsonl", "data.jsonl.gz", "/abs.jsonl"):
        with pytest.raises(Refusal):
            path_kind(bad, "f")


def test_xet_client_upload_is_refused_before_any_byte_leaves(hub: HEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    # huggingface_hub's default when hf_xet is installed: large files go over Xet, whose token the gateway refuses.
    # hf_xet (Rust) shows only the status and the route, not the gateway's message (which is in the audit log).
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", False)
    data = big(chat("xet large"), size=LFS_THRESHOLD + 10)
    m = hub.mark()
    with pytest.raises(Exception, match=r"403 Forbidden.*xet-write-token"):
        upload(hub, data, path="data/xet.jsonl")
    assert len(hub.hub.commits) == m[2] and hub.store.received[m[1] :] == []
    assert hub.since(m) == [f"POST /api/datasets/{REPO}/preupload/main"]
    entry = [e["data"] for e in hub.audit_entries() if e["data"]["route"] == "datasets.xet_write_token"][-1]
    assert entry["reason"] == "xet_not_allowed" and entry["outcome"] == "refused_before_forwarding"


def test_the_same_lfs_file_again_reuses_the_admitted_object(hub: HEnv) -> None:
    data = big(chat(f"again {EMAIL}"), size=LFS_THRESHOLD + 10)
    upload(hub, data, path="data/first.jsonl")
    first = last_commit_line(hub, "lfsFile")
    m = hub.mark()
    upload(hub, data, path="data/second.jsonl")
    second = last_commit_line(hub, "lfsFile")
    assert second["oid"] == first["oid"] != _sha(data) and second["path"] == "data/second.jsonl"
    assert hub.store.received[m[1] :] == []  # neither the client nor the gateway uploaded it again
    assert [p for p in hub.since(m) if p.endswith("/objects/batch")] == []


def test_parquet_is_refused_with_a_clear_reason_without_pyarrow(monkeypatch: pytest.MonkeyPatch, policy: Any) -> None:
    import sys

    from bastion.adapters.hf_hub.data import scan_parquet
    from bastion.policies import PolicyEngine

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(Refusal) as info:
        scan_parquet(PolicyEngine(policy), b"PAR1", "commit line 2")
    assert info.value.kind == "file_type_not_allowed" and "pyarrow is not installed" in info.value.message
    assert "bastion-provenance[hub]" in (info.value.hint or "")


def test_upload_folder_commits_data_and_card_together(hub: HEnv, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    small = jsonl(chat(f"folder {EMAIL}"))
    large = big(chat("folder large"), size=LFS_THRESHOLD + 10)
    (tmp_path / "data" / "small.jsonl").write_bytes(small)
    (tmp_path / "data" / "large.jsonl").write_bytes(large)
    (tmp_path / "README.md").write_bytes(b"---\nlicense: mit\n---\n# Folder\n")
    hub.api().upload_folder(folder_path=str(tmp_path), repo_id=REPO, repo_type="dataset")
    files = hub.hub.repos[REPO]
    assert files["data/large.jsonl"] == large and files["README.md"].startswith(b"---")
    assert EMAIL.encode() not in files["data/small.jsonl"] and b"folder" in files["data/small.jsonl"]
    entry = [e["data"] for e in hub.audit_entries() if e["data"]["route"] == "datasets.commit"][-1]
    assert entry["operations"] == {"file": 2, "lfsFile": 1, "deletedFile": 0, "deletedFolder": 0}
    assert entry["decision"] == "redact" and len(entry["inline_scans"]) == 1


def test_a_failed_store_upload_refuses_the_commit_and_a_retry_sends_the_held_object(hub: HEnv) -> None:
    data = big(chat(f"retry {EMAIL}"), size=LFS_THRESHOLD + 10)
    hub.store.fail_next = 1
    m = hub.mark()
    status, body = refused(lambda: upload(hub, data, path="data/retry.jsonl"))
    assert status == 502 and body["code"] == "upstream_error" and "HTTP 503" in body["error"]
    assert len(hub.hub.commits) == m[2]
    m = hub.mark()
    upload(hub, data, path="data/retry.jsonl")  # the client does not upload again: the gateway holds it
    stored = hub.store.objects[last_commit_line(hub, "lfsFile")["oid"]]
    assert EMAIL.encode() not in stored and len(hub.store.received[m[1] :]) == 1


def test_an_upload_url_on_a_host_the_upstream_does_not_name_gets_nothing(hub: HEnv) -> None:
    data = big(chat("to an unnamed plain-http host"), size=LFS_THRESHOLD + 10)
    m = hub.mark()
    with pytest.raises(HfHubHTTPError) as info:
        hub.api(upstream="hf_nostore").upload_file(
            path_or_fileobj=data, path_in_repo="data/x.jsonl", repo_id=REPO, repo_type="dataset"
        )
    resp = info.value.response
    assert resp is not None and resp.status_code == 502 and "plain-http upload URL" in resp.json()["error"]
    assert hub.store.received[m[1] :] == [] and len(hub.hub.commits) == m[2]
    assert str(hub.hub.store_url) not in resp.text


def test_a_commit_id_the_hub_named_may_pin_a_revision(hub: HEnv, policy: Any) -> None:
    """A client pins a revision with a commit id; 1.3 % of them hold a digit run that passes a card or id
    number check on its own. One the Hub named through the gateway (a dataset's sha, a commit's commitOid)
    is not read as personal data when sent back; the same shape the Hub never named still is."""
    sha = "6585669831325548505" + "abcdefabcdefabcdefabc"
    with pytest.raises(Refusal):  # what the scan of a path id makes of it on its own
        check_opaque(PolicyEngine(policy), {"revision": sha}, "path id", "datasets.info")
    api = hub.api()
    before = hub.mark()
    status, body = refused(lambda: api.dataset_info(REPO, revision=sha))
    assert status == 400 and body["code"] == "invalid_id" and hub.since(before) == []
    hub.hub.head = sha
    try:
        assert api.dataset_info(REPO).sha == sha  # the Hub names it
        assert api.dataset_info(REPO, revision=sha).sha == sha
    finally:
        hub.hub.head = "0" * 40
