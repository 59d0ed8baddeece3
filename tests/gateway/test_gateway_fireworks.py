"""Fireworks AI through the gateway with the official ``fireworks-ai`` SDK (1.2.30), only its ``base_url``
pointed at the gateway, against a recording stand-in of ``api.fireworks.ai`` on 127.0.0.1 that speaks
Fireworks' wire protocol (datasets with ``:verb`` routes, multipart ``:upload``, signed-URL answers of
``:getUploadEndpoint`` pointing at a second recording server for the object store, the three job kinds,
grpc-gateway ``google.rpc.Status`` errors)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fireworks import Fireworks, PermissionDeniedError
from fireworks._exceptions import APIStatusError
from fireworks.lib.dataset_upload import upload_dataset_shards
from gw_support import CLIENT_TOKEN, EMAIL, IBAN, PROVIDER_KEY, AuditLog, chat, jsonl, self_signed, start_gateway
from gw_upstream import Received, parse_multipart, record_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.adapters import get_provider
from bastion.adapters.fireworks.spec import record_problem
from bastion.gateway.app import Gateway, create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.gateway.serve import ServerThread

ACCOUNT = "acme"
WANDB_KEY = "wandb-secret-key-0123456789abcdef0123456789"
SECRET_REF = "accounts/acme/secrets/s3-creds-SECRET-0123456789"
RFT_EVALUATOR = f"accounts/{ACCOUNT}/evaluators/exact-match"
_JOB_KINDS = {
    "supervisedFineTuningJobs": "supervisedFineTuningJobs",
    "dpoJobs": "dpoJobs",
    "reinforcementFineTuningJobs": "reinforcementFineTuningJobs",
}


def _status(status: int, message: str, code: int = 3) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "details": []}, status_code=status)


@dataclass
class Recorder:
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def record(self, request: Request) -> Received:
        return await record_request(request, self.received, self.lock)


@dataclass
class SignedStore(Recorder):
    """The object store behind Fireworks' signed URLs: whatever reaches it left without the gateway."""

    def app(self) -> Starlette:
        async def put(request: Request) -> Response:
            await self.record(request)
            return Response(b"", status_code=200)

        return Starlette(routes=[Route("/{path:path}", put, methods=["PUT", "POST", "GET"])])


@dataclass
class FakeFireworks(Recorder):
    """Datasets and jobs kept in memory; every request recorded (method, path, headers, raw body)."""

    store_url: str = ""
    datasets: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def app(self) -> Starlette:
        async def dispatch(request: Request) -> Response:
            rec = await self.record(request)
            account, rest = request.path_params["account"], request.path_params["rest"]
            m = re.fullmatch(r"datasets(?:/([a-z0-9-]+)(?::(\w+))?)?", rest)
            if m:
                return self._dataset(rec, account, m.group(1), m.group(2))
            m = re.fullmatch(r"(\w+)(?:/([a-z0-9-]+)(?::(\w+))?)?", rest)
            if m and m.group(1) in _JOB_KINDS:
                return self._job(rec, account, m.group(1), m.group(2), m.group(3))
            return _status(404, "no such route", 5)

        return Starlette(
            routes=[Route("/v1/accounts/{account}/{rest:path}", dispatch, methods=["GET", "POST", "DELETE"])]
        )

    def _dataset(self, rec: Received, account: str, ds: str | None, verb: str | None) -> Response:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if ds is None:
            if rec.method == "GET":
                return JSONResponse({"datasets": list(self.datasets.values()), "nextPageToken": ""})
            body = json.loads(rec.body)
            name = f"accounts/{account}/datasets/{body['datasetId']}"
            self.datasets[name] = {**body["dataset"], "name": name, "state": "UPLOADING", "createTime": now}
            return JSONResponse(self.datasets[name])
        name = f"accounts/{account}/datasets/{ds}"
        if name not in self.datasets:
            return _status(404, f"dataset {name} not found", 5)
        if verb is None:
            if rec.method == "DELETE":
                del self.datasets[name]
                return JSONResponse({})
            return JSONResponse(self.datasets[name])
        if verb == "upload":
            ct = rec.headers.get("content-type", "")
            if not ct.startswith("multipart/form-data") or int(rec.headers.get("content-length", "-1")) != len(
                rec.body
            ):
                return _status(400, "expected a multipart/form-data body with an exact Content-Length")
            filename, content = parse_multipart(ct, rec.body)["file"]
            self.contents[name] = content
            self.datasets[name]["state"] = "READY"
            return JSONResponse({"id": ds, "bytes": len(content), "filename": filename, "object": "file"})
        if verb in ("getUploadEndpoint", "getDownloadEndpoint"):
            files = json.loads(rec.body)["filenameToSize"] if verb == "getUploadEndpoint" else {"train.jsonl": 1}
            urls = {f: f"{self.store_url}/fw-datasets/{ds}/{f}?X-Goog-Signature=abc" for f in files}
            return JSONResponse({"filenameToSignedUrls": urls})
        if verb == "validateUpload":
            self.datasets[name]["state"] = "READY"
            return JSONResponse({})
        return _status(404, "no such method", 5)

    def _job(self, rec: Received, account: str, kind: str, job_id: str | None, verb: str | None) -> Response:
        if job_id is None:
            if rec.method == "GET":
                found = [j for j in self.jobs.values() if j["name"].split("/")[2] == kind]
                return JSONResponse({kind: found, "nextPageToken": ""})
            body = json.loads(rec.body)
            for ref in (body.get("dataset"), body.get("evaluationDataset")):
                if ref is not None and ref not in self.datasets:
                    return _status(400, f"dataset {ref} not found")
            jid = uuid.uuid4().hex[:12].translate(_LETTERS)  # letters: a hex digit run can read as an id number
            name = f"accounts/{account}/{kind}/{jid}"
            self.jobs[name] = {**body, "name": name, "state": "JOB_STATE_CREATING"}
            return JSONResponse(self.jobs[name])
        name = f"accounts/{account}/{kind}/{job_id}"
        if name not in self.jobs:
            return _status(404, f"job {name} not found", 5)
        if rec.method == "DELETE":
            del self.jobs[name]
            return JSONResponse({})
        if verb == "cancel":
            self.jobs[name]["state"] = "JOB_STATE_CANCELLED"
        elif verb == "resume":
            self.jobs[name]["state"] = "JOB_STATE_RUNNING"
        return JSONResponse(self.jobs[name])


@dataclass
class FEnv(AuditLog):
    upstream: FakeFireworks
    store: SignedStore
    gateway: Gateway
    url: str
    state_dir: Path

    def client(self, upstream: str = "fireworks", **kw: Any) -> Fireworks:
        kw.setdefault("api_key", CLIENT_TOKEN)
        return Fireworks(account_id=ACCOUNT, base_url=f"{self.url}/{upstream}", max_retries=0, **kw)

    def mark(self) -> int:
        return len(self.upstream.received)

    def sent_since(self, n: int) -> list[Received]:
        return self.upstream.received[n:]


@pytest.fixture(scope="module")
def fw(tmp_path_factory: pytest.TempPathFactory, policy: Any) -> Iterator[FEnv]:
    store = SignedStore()
    with ServerThread(store.app()) as store_srv:
        fake = FakeFireworks(store_url=store_srv.url)
        with ServerThread(fake.app()) as up:
            tmp = tmp_path_factory.mktemp("fireworks")
            gw, srv = start_gateway(
                tmp,
                policy,
                {
                    "fireworks": {"base_url": up.url, "adapter": "fireworks", "jurisdiction": "US"},
                    "fireworks_xx": {"base_url": up.url, "adapter": "fireworks", "jurisdiction": "XX"},
                },
            )
            try:
                yield FEnv(fake, store, gw, srv.url, tmp)
            finally:
                srv.stop()


_COUNTER = iter(range(1_000_000))


_LETTERS = str.maketrans("0123456789", "ghijklmnop")


def new_dataset(env: FEnv, upstream: str = "fireworks") -> str:
    # letters only after the counter: a random run of digits can read as a phone number (a path id is scanned)
    ds = f"ds-{next(_COUNTER)}-{uuid.uuid4().hex[:6].translate(_LETTERS)}"
    env.client(upstream).datasets.create(dataset_id=ds, dataset={"display_name": "train", "format": "CHAT"})
    return ds


def upload(env: FEnv, data: bytes, ds: str | None = None, upstream: str = "fireworks") -> str:
    """Create a dataset and upload ``data`` to it through the gateway; its resource name."""
    ds = ds or new_dataset(env, upstream)
    env.client(upstream).datasets.upload(ds, file=("train.jsonl", data))
    return f"accounts/{ACCOUNT}/datasets/{ds}"


def sent_file(env: FEnv, n: int) -> tuple[str | None, bytes]:
    [rec] = [r for r in env.sent_since(n) if r.method == "POST" and r.path.endswith(":upload")]
    return parse_multipart(rec.headers["content-type"], rec.body)["file"]


def refused(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(APIStatusError) as info:
        call()
    body = info.value.body
    assert isinstance(body, dict), body
    return info.value.status_code, body


def reason(body: dict[str, Any]) -> str:
    """The gateway's reason in a Fireworks error (google.rpc.Status with an ErrorInfo detail)."""
    [info] = body["details"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo" and info["domain"] == "bastion.gateway"
    return str(info["reason"])


def raw_post(env: FEnv, path: str, payload: Any) -> httpx.Response:
    return httpx.post(
        f"{env.url}/fireworks/v1/accounts/{ACCOUNT}/{path}",
        json=payload,
        headers={"authorization": f"Bearer {CLIENT_TOKEN}"},
    )


DPO = {
    "input": {"messages": [{"role": "user", "content": "Capital of France?"}]},
    "preferred_output": [{"role": "assistant", "content": "Paris."}],
    "non_preferred_output": [{"role": "assistant", "content": "Lyon."}],
}
RFT = {"messages": [{"role": "user", "content": "2+2?"}], "ground_truth": "4"}


# -- datasets ---------------------------------------------------------------------------------------------
def test_clean_dataset_arrives_byte_identical_with_the_client_key(fw: FEnv) -> None:
    tool_call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    data = jsonl(
        chat("What is the capital of France?", "Paris."),
        {
            "messages": [
                {"role": "system", "content": "You call tools."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [tool_call]},
                {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                {"role": "assistant", "content": "Sunny.", "weight": 1},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        },
        DPO,
        RFT,
        {"prompt": "Once upon", "completion": " a time"},
    )
    n = fw.mark()
    ref = upload(fw, data)
    filename, content = sent_file(fw, n)
    assert content == data and filename == "train.jsonl"
    create = fw.sent_since(n)[0]
    assert json.loads(create.body) == {"datasetId": ref.rsplit("/", 1)[1], "dataset": {"displayName": "train",
                                                                                      "format": "CHAT"}}  # fmt: skip
    assert all(r.headers["authorization"] == f"Bearer {CLIENT_TOKEN}" for r in fw.sent_since(n))
    client = fw.audit_entries()[-1]["data"]["client"]
    admitted = fw.gateway.state.admitted("fireworks", ref, client=client)
    assert admitted is not None and admitted.purpose == "fine-tune" and admitted.records == 5


def test_personal_data_is_redacted_before_it_leaves(fw: FEnv) -> None:
    n = fw.mark()
    ref = upload(fw, jsonl(chat(f"write to {EMAIL}"), chat("nothing here")))
    _, content = sent_file(fw, n)
    assert EMAIL.encode() not in content and b"nothing here" in content
    assert fw.upstream.contents[ref] == content
    entry = [e["data"] for e in fw.audit_entries() if e["data"]["route"] == "datasets.upload"][-1]
    assert entry["decision"] == "redact" and entry["file_id"] == ref
    assert EMAIL not in fw.audit_text()


def test_blocked_dataset_never_arrives(fw: FEnv) -> None:
    ds = new_dataset(fw)
    n = fw.mark()
    status, body = refused(lambda: upload(fw, jsonl(chat("hi"), chat(f"my IBAN is {IBAN}")), ds=ds))
    assert status == 403 and body["code"] == 7 and reason(body) == "policy_block"
    assert "record(s): 2" in body["message"] and IBAN not in json.dumps(body)
    assert fw.sent_since(n) == []
    assert IBAN not in fw.audit_text()


def test_datasets_get_list_delete_and_download_endpoint_pass_through(fw: FEnv) -> None:
    c = fw.client()
    ref = upload(fw, jsonl(chat("listing")))
    ds = ref.rsplit("/", 1)[1]
    assert c.datasets.get(ds, read_mask="name,state").state == "READY"
    assert fw.upstream.received[-1].query == "readMask=name%2Cstate"
    assert ref in [d.name for d in c.datasets.list(page_size=10)]
    urls = c.datasets.get_download_endpoint(ds).to_dict()
    assert list(urls["filenameToSignedUrls"]) == ["train.jsonl"]
    c.datasets.validate_upload(ds, body={})
    assert fw.upstream.received[-1].path.endswith(f"/datasets/{ds}:validateUpload")
    c.datasets.delete(ds)
    assert ref not in fw.upstream.datasets


# -- the signed-URL flow (getUploadEndpoint -> PUT -> validateUpload), held by the gateway --------------------
def _self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (the SDK's shard helper refuses upload URLs that are not https)."""
    return self_signed(tmp, files=("gw.pem", "gw.key"))


@dataclass
class TlsEnv:
    env: FEnv
    https_url: str


@pytest.fixture(scope="module")
def fw_tls(tmp_path_factory: pytest.TempPathFactory, policy: Any) -> Iterator[TlsEnv]:
    """The gateway over TLS; Fireworks' signed URLs point at a second recording server (the object store)."""
    tmp = tmp_path_factory.mktemp("fireworks-tls")
    cert, key = _self_signed(tmp)
    store = SignedStore()
    with ServerThread(store.app()) as store_srv:
        fake = FakeFireworks(store_url=store_srv.url)
        with ServerThread(fake.app()) as up:
            cfg = config_from_mapping(
                {
                    "upstreams": {
                        "fireworks": {
                            "base_url": up.url,
                            "adapter": "fireworks",
                            "jurisdiction": "US",
                            "hosts": {"signed_urls": store_srv.url},
                        },
                        # an upstream whose allowed object store is not where Fireworks' URLs point
                        "fireworks_gcs": {"base_url": up.url, "adapter": "fireworks", "jurisdiction": "US"},
                    },
                    "gateway": {"state_dir": str(tmp / "state")},
                }
            )
            gw = create_gateway(cfg, policy, policy_name="gateway-tests.yaml")
            srv = ServerThread(gw.app, ssl_certfile=str(cert), ssl_keyfile=str(key)).start()
            try:
                yield TlsEnv(FEnv(fake, store, gw, srv.url, tmp / "state"), f"https://127.0.0.1:{srv.port}")
            finally:
                srv.stop()


@pytest.fixture
def tls_client(fw_tls: TlsEnv, monkeypatch: pytest.MonkeyPatch) -> Fireworks:
    # the SDK and its shard helper's plain httpx client both trust the gateway's certificate through this
    monkeypatch.setenv("SSL_CERT_FILE", str(fw_tls.env.state_dir.parent / "gw.pem"))
    return Fireworks(api_key=CLIENT_TOKEN, account_id=ACCOUNT, base_url=f"{fw_tls.https_url}/fireworks", max_retries=0)


def _shard(tmp: Path, data: bytes) -> Path:
    folder = tmp / uuid.uuid4().hex
    folder.mkdir()
    (folder / "train.jsonl").write_bytes(data)
    return folder


def test_signed_url_flow_scans_before_any_byte_reaches_the_store(
    fw_tls: TlsEnv, tls_client: Fireworks, tmp_path: Path
) -> None:
    """The SDK's own shard helper (``fireworks.lib.dataset_upload``): get_upload_endpoint returns a gateway
    URL, the file is PUT there, and at validate_upload the gateway sends the redacted bytes to Fireworks'
    signed URL for the rewritten size."""
    env = fw_tls.env
    data = jsonl(chat(f"mail {EMAIL}"), chat("nothing here"))
    ds = f"big-{uuid.uuid4().hex[:8]}"
    tls_client.datasets.create(dataset_id=ds, dataset={"format": "CHAT", "example_count": "2"})
    n, s = env.mark(), len(env.store.received)
    upload_dataset_shards(tls_client, ds, str(_shard(tmp_path, data)))
    [put] = env.store.received[s:]
    assert put.method == "PUT" and put.path == f"/fw-datasets/{ds}/train.jsonl"
    assert EMAIL.encode() not in put.body and b"nothing here" in put.body
    assert put.headers["x-goog-content-length-range"] == f"{len(put.body)},{len(put.body)}"
    assert "authorization" not in put.headers  # no Fireworks credential to the object store
    calls = [(r.method, r.path.rsplit("/", 1)[1]) for r in env.sent_since(n)]
    assert calls == [("GET", ds), ("POST", f"{ds}:getUploadEndpoint"), ("POST", f"{ds}:validateUpload")]
    asked = json.loads(env.sent_since(n)[1].body)
    assert asked == {"filenameToSize": {"train.jsonl": str(len(put.body))}}  # the rewritten size, not the client's
    ref = f"accounts/{ACCOUNT}/datasets/{ds}"
    client = [e["data"]["client"] for e in env.audit_entries() if e["data"]["route"] == "datasets.validate_upload"][-1]
    admitted = env.gateway.state.admitted("fireworks", ref, client=client)
    assert admitted is not None and admitted.decision == "redact" and admitted.records == 2
    job = tls_client.supervised_fine_tuning_jobs.create(dataset=ref, base_model="m")
    assert job.name is not None
    n = env.mark()
    tls_client.datasets.validate_upload(ds, body={})  # a repeated validate is answered from the gateway's record
    assert [r.path for r in env.sent_since(n)] == [] and len(env.store.received) == s + 1
    assert EMAIL not in env.audit_text() and "X-Goog-Signature" not in env.audit_text()
    routes = [e["data"]["route"] for e in env.audit_entries()]
    assert {"datasets.get_upload_endpoint", "datasets.held_upload", "datasets.validate_upload"} <= set(routes)
    assert not any("bastion-upload" in r.path for r in env.upstream.received)  # the gateway's own URL stays here


def test_signed_url_flow_with_blocked_data_sends_nothing(fw_tls: TlsEnv, tls_client: Fireworks, tmp_path: Path) -> None:
    env = fw_tls.env
    ds = f"blk-{uuid.uuid4().hex[:8]}"
    tls_client.datasets.create(dataset_id=ds, dataset={"format": "CHAT"})
    n, s = env.mark(), len(env.store.received)
    with pytest.raises(PermissionDeniedError) as info:
        upload_dataset_shards(tls_client, ds, str(_shard(tmp_path, jsonl(chat("hi"), chat(f"IBAN {IBAN}")))))
    body = info.value.body
    assert isinstance(body, dict) and reason(body) == "policy_block" and "record(s): 2" in body["message"]
    assert env.store.received[s:] == []
    assert [r.method for r in env.sent_since(n)] == ["GET"]  # the helper's datasets.get; nothing else went out
    assert IBAN not in env.audit_text()


def test_signed_url_flow_bad_inputs(fw_tls: TlsEnv, tls_client: Fireworks) -> None:
    env = fw_tls.env
    ds = f"bad-{uuid.uuid4().hex[:8]}"
    tls_client.datasets.create(dataset_id=ds, dataset={"format": "CHAT"})
    n, s = env.mark(), len(env.store.received)
    two = {"a.jsonl": "10", "b.jsonl": "10"}
    status, body = refused(lambda: tls_client.datasets.get_upload_endpoint(ds, filename_to_size=two))
    assert status == 400 and "one file per dataset" in body["message"]
    for files in ({"../x.jsonl": "10"}, {"a.csv": "10"}, {"a.jsonl": "ten"}, {"a.jsonl": "0"}):
        status, body = refused(lambda f=files: tls_client.datasets.get_upload_endpoint(ds, filename_to_size=f))
        assert status == 400 and body["details"][0]["metadata"] == {"param": "filenameToSize"}, body
    urls = tls_client.datasets.get_upload_endpoint(ds, filename_to_size={"t.jsonl": "12"}).filename_to_signed_urls
    assert urls is not None
    url = urls["t.jsonl"]
    assert url.startswith(f"{fw_tls.https_url}/fireworks/v1/accounts/{ACCOUNT}/datasets/{ds}/bastion-upload/")
    with httpx.Client(verify=str(env.state_dir.parent / "gw.pem")) as http:
        r = http.put(url, content=b"x" * 13)
        assert r.status_code == 400 and reason(r.json()) == "invalid_upload" and "12 bytes" in r.json()["message"]
        r = http.put(url, content=b"x" * 11)
        assert r.status_code == 400 and reason(r.json()) == "invalid_upload"
        r = http.put(url[:-4] + ("aaaa" if not url.endswith("aaaa") else "bbbb"), content=b"{}")  # a wrong ticket
        assert r.status_code == 404 and reason(r.json()) == "upload_not_found"
        assert http.put(url, content=jsonl(chat("hi!"))[:12]).status_code == 200
        r = http.put(url, content=b"x" * 12)
        assert r.status_code == 409 and reason(r.json()) == "upload_not_pending"
    status, body = refused(lambda: tls_client.datasets.validate_upload(ds, body={}))
    assert status == 400 and "record 1" in body["message"]  # the 12 bytes held are a cut JSON line
    assert env.sent_since(n) == [] and env.store.received[s:] == []
    assert url.rsplit("/", 1)[1] not in env.audit_text()  # the ticket is the PUT's credential: never logged


def test_signed_url_flow_works_with_an_allow_list_of_clients(
    tmp_path: Path, policy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shard helper PUTs without its key: the gateway URL's ticket stands for the client it was issued to."""
    cert, key = _self_signed(tmp_path)
    store = SignedStore()
    with ServerThread(store.app()) as store_srv:
        fake = FakeFireworks(store_url=store_srv.url)
        with ServerThread(fake.app()) as up:
            fingerprint = "sha256:" + hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest()[:16]
            upstream = {"base_url": up.url, "adapter": "fireworks", "jurisdiction": "US"}
            cfg = config_from_mapping(
                {
                    "upstreams": {"fireworks": {**upstream, "hosts": {"signed_urls": store_srv.url}}},
                    "gateway": {"state_dir": str(tmp_path / "state"), "allowed_clients": [fingerprint]},
                }
            )
            gw = create_gateway(cfg, policy, policy_name="gateway-tests.yaml")
            srv = ServerThread(gw.app, ssl_certfile=str(cert), ssl_keyfile=str(key)).start()
            try:
                monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "gw.pem"))
                base = f"https://127.0.0.1:{srv.port}/fireworks"
                c = Fireworks(api_key=CLIENT_TOKEN, account_id=ACCOUNT, base_url=base, max_retries=0)
                c.datasets.create(dataset_id="allowed", dataset={"format": "CHAT"})
                upload_dataset_shards(c, "allowed", str(_shard(tmp_path, jsonl(chat(f"mail {EMAIL}")))))
                [put] = store.received
                assert EMAIL.encode() not in put.body and "authorization" not in put.headers
                env = FEnv(fake, store, gw, srv.url, tmp_path / "state")
                held = [e["data"] for e in env.audit_entries() if e["data"]["route"] == "datasets.held_upload"]
                assert held and all(e["client"] == fingerprint for e in held)  # the PUT stands for the client
                other = Fireworks(api_key="fw_other", account_id=ACCOUNT, base_url=base, max_retries=0)
                with pytest.raises(APIStatusError) as info:
                    other.datasets.get_upload_endpoint("allowed", filename_to_size={"t.jsonl": "9"})
                assert info.value.status_code == 401
            finally:
                srv.stop()


def test_signed_url_to_a_store_the_gateway_may_not_use_is_refused(
    fw_tls: TlsEnv, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = fw_tls.env
    monkeypatch.setenv("SSL_CERT_FILE", str(env.state_dir.parent / "gw.pem"))
    c = Fireworks(api_key=CLIENT_TOKEN, account_id=ACCOUNT, base_url=f"{fw_tls.https_url}/fireworks_gcs", max_retries=0)
    ds = f"gcs-{uuid.uuid4().hex[:8]}"
    c.datasets.create(dataset_id=ds, dataset={"format": "CHAT"})
    s = len(env.store.received)
    with pytest.raises(APIStatusError) as info:
        upload_dataset_shards(c, ds, str(_shard(tmp_path, jsonl(chat("fine")))))
    body = info.value.body
    assert info.value.status_code == 502 and isinstance(body, dict) and reason(body) == "upload_host_not_allowed"
    assert "hosts.signed_urls" in body["message"] and env.store.received[s:] == []


def test_external_url_is_refused(fw: FEnv) -> None:
    n = fw.mark()
    status, body = refused(
        lambda: fw.client().datasets.create(
            dataset_id="pulled", dataset={"external_url": "gs://acme-bucket/train.jsonl", "format": "CHAT"}
        )
    )
    assert status == 403 and reason(body) == "provider_pull_refused"
    assert body["details"][0]["metadata"] == {"param": "dataset.externalUrl"} and "acme-bucket" not in body["message"]
    assert fw.sent_since(n) == [] and "acme-bucket" not in fw.audit_text()


def test_an_admitted_dataset_name_takes_no_other_data(fw: FEnv) -> None:
    ref = upload(fw, jsonl(chat("first")))
    ds = ref.rsplit("/", 1)[1]
    n = fw.mark()
    status, body = refused(lambda: upload(fw, jsonl(chat("second")), ds=ds))
    assert status == 409 and reason(body) == "dataset_already_admitted" and "new dataset" in body["message"]
    status, body = refused(lambda: fw.client().datasets.get_upload_endpoint(ds, filename_to_size={"a.jsonl": "9"}))
    assert status == 409 and reason(body) == "dataset_already_admitted"
    fw.client().datasets.delete(ds)
    status, body = refused(lambda: fw.client().datasets.create(dataset_id=ds, dataset={"format": "CHAT"}))
    assert status == 409 and reason(body) == "dataset_already_admitted"
    assert [r.method for r in fw.sent_since(n)] == ["DELETE"]


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'{"messages": [{"role": "user", "content": "hi"}]\n', "record 1"),
        (jsonl({"text": "a"}), "not a Fireworks dataset record"),
        (jsonl({"messages": [{"role": "robot", "content": "hi"}]}), "messages[0].role"),
        (jsonl({"messages": [{"role": "user", "content": "hi", "extra": 1}]}), "does not know"),
        (jsonl({**DPO, "metadata": 1}), "a DPO record is exactly"),
        (jsonl({**DPO, "preferred_output": [{"role": "user", "content": "x"}]}), "preferred_output[0].role"),
        (jsonl({"prompt": "a", "completion": 1}), "a completion record"),
        (
            jsonl(
                {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": "https://x.ex/a.png"}]}]}
            ),
            "points outside",
        ),
    ],
)
def test_malformed_records_refused_before_forwarding(fw: FEnv, data: bytes, where: str) -> None:
    ds = new_dataset(fw)
    n = fw.mark()
    status, body = refused(lambda: upload(fw, data, ds=ds))
    assert status == 400 and body["code"] == 3 and where in body["message"], body
    assert fw.sent_since(n) == []


def test_bad_upload_forms_are_refused(fw: FEnv) -> None:
    ds = new_dataset(fw)
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    url = f"{fw.url}/fireworks/v1/accounts/{ACCOUNT}/datasets/{ds}:upload"
    n = fw.mark()
    r = httpx.post(url, data={"note": EMAIL}, files={"file": ("t.jsonl", jsonl(chat("x")))}, headers=hdr)
    assert r.status_code == 400 and reason(r.json()) == "invalid_upload" and EMAIL not in r.text
    r = httpx.post(url, files={"other": ("t.jsonl", jsonl(chat("x")))}, headers=hdr)
    assert r.status_code == 400 and reason(r.json()) == "invalid_upload"
    r = httpx.post(url, content=b"{}", headers={**hdr, "content-type": "application/json"})
    assert r.status_code == 415 and r.json()["code"] == 3
    assert fw.sent_since(n) == []


# -- fine-tuning jobs -------------------------------------------------------------------------------------
def test_sft_job_lifecycle_on_admitted_datasets(fw: FEnv) -> None:
    c = fw.client()
    train, val = upload(fw, jsonl(chat("train"))), upload(fw, jsonl(chat("validate")))
    job = c.supervised_fine_tuning_jobs.create(
        dataset=train,
        evaluation_dataset=val,
        base_model="accounts/fireworks/models/llama-v3p1-8b-instruct",
        epochs=1,
        display_name="team-a",
        wandb_config={"enabled": True, "project": "ft"},
        supervised_fine_tuning_job_id="sft-team-a",
    )
    rec = [r for r in fw.upstream.received if r.path.endswith("/supervisedFineTuningJobs")][-1]
    sent = json.loads(rec.body)
    assert (
        sent["dataset"] == train
        and sent["evaluationDataset"] == val
        and rec.query == "supervisedFineTuningJobId=sft-team-a"
    )
    assert job.name is not None
    jid = job.name.rsplit("/", 1)[1]
    assert c.supervised_fine_tuning_jobs.get(jid).name == job.name
    assert job.name in [j.name for j in c.supervised_fine_tuning_jobs.list(page_size=5)]
    c.supervised_fine_tuning_jobs.cancel(jid, body={})
    assert fw.upstream.jobs[job.name]["state"] == "JOB_STATE_CANCELLED"
    c.supervised_fine_tuning_jobs.resume(jid, body={})
    c.supervised_fine_tuning_jobs.delete(jid)
    entry = [e["data"] for e in fw.audit_entries() if e["data"]["route"] == "supervised_fine_tuning_jobs.create"][-1]
    assert entry["outcome"] == "forwarded" and set(entry["files"]) == {"dataset", "evaluationDataset"}
    assert entry["residency"]["jurisdiction"] == "US" and entry["object_id"] == job.name


def test_dpo_and_rft_jobs_on_admitted_datasets(fw: FEnv) -> None:
    c = fw.client()
    dpo = c.dpo_jobs.create(
        dataset=upload(fw, jsonl(DPO)),
        training_config={"base_model": "accounts/fireworks/models/llama-v3p1-8b-instruct", "epochs": 1},
        loss_config={"method": "DPO", "kl_beta": 0.1},
    )
    assert dpo.name is not None and c.dpo_jobs.get(dpo.name.rsplit("/", 1)[1]).name == dpo.name
    c.dpo_jobs.cancel(dpo.name.rsplit("/", 1)[1], body={})
    rft = c.reinforcement_fine_tuning_jobs.create(
        dataset=upload(fw, jsonl(RFT)),
        evaluator=RFT_EVALUATOR,
        training_config={"base_model": "accounts/fireworks/models/qwen3-8b"},
        inference_parameters={"max_output_tokens": 256, "temperature": 0.7},
    )
    assert rft.name is not None
    assert rft.name in [j.name for j in c.reinforcement_fine_tuning_jobs.list()]
    c.reinforcement_fine_tuning_jobs.delete(rft.name.rsplit("/", 1)[1])


@pytest.mark.parametrize("kind", ["sft", "dpo", "rft"])
def test_job_on_an_unscanned_dataset_is_refused(fw: FEnv, kind: str) -> None:
    c = fw.client()
    never_uploaded = f"accounts/{ACCOUNT}/datasets/{new_dataset(fw)}"
    n = fw.mark()
    calls = {
        "sft": lambda: c.supervised_fine_tuning_jobs.create(dataset=never_uploaded, base_model="m"),
        "dpo": lambda: c.dpo_jobs.create(dataset=never_uploaded),
        "rft": lambda: c.reinforcement_fine_tuning_jobs.create(dataset=never_uploaded, evaluator=RFT_EVALUATOR),
    }
    status, body = refused(calls[kind])
    assert status == 403 and reason(body) == "unscanned_file" and "never scanned" in body["message"]
    assert fw.sent_since(n) == []


def test_unscanned_evaluation_dataset_and_other_upstreams_are_refused(fw: FEnv) -> None:
    c = fw.client()
    train = upload(fw, jsonl(chat("ok")))
    status, body = refused(
        lambda: c.supervised_fine_tuning_jobs.create(
            dataset=train, evaluation_dataset=f"accounts/{ACCOUNT}/datasets/{new_dataset(fw)}"
        )
    )
    assert (
        status == 403
        and reason(body) == "unscanned_file"
        and body["details"][0]["metadata"]["param"] == ("evaluationDataset")
    )
    elsewhere = upload(fw, jsonl(chat("hello")), upstream="fireworks_xx")
    status, body = refused(lambda: c.supervised_fine_tuning_jobs.create(dataset=elsewhere))
    assert status == 403 and reason(body) == "unscanned_file"


def _secret_free(fw: FEnv, secret: str, caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    assert all(secret not in t for t in texts)
    # the client side (the SDK's own debug log of its request options, httpx) is not the gateway's to police
    client_side = ("fireworks", "httpx", "httpcore")
    assert all(secret not in r.getMessage() for r in caplog.records if not r.name.startswith(client_side))
    assert any(r.name.startswith("fireworks") and secret in r.getMessage() for r in caplog.records)  # it was sent
    assert all(secret.encode() not in p.read_bytes() for p in fw.state_dir.rglob("*") if p.is_file())
    assert all(secret.encode() not in r.body for r in fw.upstream.received)


@pytest.mark.parametrize(
    ("kind", "extra", "param"),
    [
        ("sft", {"aws_s3_config": {"credentials_secret": SECRET_REF, "iam_role_arn": "arn:aws:iam::1:role/x"}},
         "awsS3Config"),
        ("dpo", {"azure_blob_storage_config": {"credentials_secret": SECRET_REF, "tenant_id": "t"}},
         "azureBlobStorageConfig"),
        ("rft", {"aws_s3_config": {"credentials_secret": SECRET_REF}}, "awsS3Config"),
        ("rft", {"mcp_server": f"https://mcp.example/{SECRET_REF}"}, "mcpServer"),
    ],
)  # fmt: skip
def test_provider_pull_fields_are_refused_and_never_written(
    fw: FEnv, caplog: pytest.LogCaptureFixture, kind: str, extra: dict[str, Any], param: str
) -> None:
    caplog.set_level(logging.DEBUG)
    c = fw.client()
    train = upload(fw, jsonl(chat("ok") if kind != "dpo" else DPO))
    n = fw.mark()
    calls = {
        "sft": lambda: c.supervised_fine_tuning_jobs.create(dataset=train, **extra),
        "dpo": lambda: c.dpo_jobs.create(dataset=train, **extra),
        "rft": lambda: c.reinforcement_fine_tuning_jobs.create(dataset=train, evaluator=RFT_EVALUATOR, **extra),
    }
    status, body = refused(calls[kind])
    assert status == 403 and reason(body) == "provider_pull_refused"
    assert body["details"][0]["metadata"]["param"] == param and fw.sent_since(n) == []
    entry = fw.audit_entries()[-1]["data"]
    assert entry["outcome"] == "refused_before_forwarding" and entry["reason"] == "provider_pull_refused"
    _secret_free(fw, SECRET_REF, caplog, json.dumps(body), json.dumps(entry))


def test_wandb_api_key_is_refused_and_never_written(fw: FEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    train = upload(fw, jsonl(chat("ok")))
    n = fw.mark()
    status, body = refused(
        lambda: fw.client().supervised_fine_tuning_jobs.create(
            dataset=train, wandb_config={"api_key": WANDB_KEY, "project": "ft", "enabled": True}
        )
    )
    assert status == 403 and reason(body) == "credential_in_body" and fw.sent_since(n) == []
    _secret_free(fw, WANDB_KEY, caplog, json.dumps(body))


@pytest.mark.parametrize(
    ("path", "payload", "kind", "param"),
    [
        ("supervisedFineTuningJobs", {"dataset": "ds-1"}, "invalid_request", "dataset"),
        ("supervisedFineTuningJobs", {"baseModel": "m"}, "invalid_request", "dataset"),
        ("supervisedFineTuningJobs", {"dataset": "accounts/acme/datasets/x", "notes": "x"}, "invalid_request", None),
        ("dpoJobs", {"dataset": "accounts/acme/datasets/x", "epochs": 1}, "invalid_request", None),
        ("reinforcementFineTuningJobs", {"dataset": "accounts/acme/datasets/x"}, "invalid_request", "evaluator"),
        ("supervisedFineTuningJobs", {"dataset": "accounts/acme/datasets/x", "wandbConfig": "k"}, "invalid_request",
         "wandbConfig"),
        ("supervisedFineTuningJobs", [], "invalid_request", None),
        ("datasets", {"datasetId": "Bad_Id", "dataset": {}}, "invalid_request", "datasetId"),
        ("datasets", {"datasetId": "ok-id"}, "invalid_request", "dataset"),
        ("datasets", {"datasetId": "ok-id", "dataset": {"format": "IMAGES"}}, "invalid_request", "dataset.format"),
        ("datasets", {"datasetId": "ok-id", "dataset": {"secretField": 1}}, "invalid_request", None),
    ],
)  # fmt: skip
def test_bad_bodies_get_a_clear_error(fw: FEnv, path: str, payload: Any, kind: str, param: str | None) -> None:
    n = fw.mark()
    r = raw_post(fw, path, payload)
    body = r.json()
    assert r.status_code == 400 and body["code"] == 3 and reason(body) == kind, body
    assert body["details"][0]["metadata"] == ({"param": param} if param else {})
    assert fw.sent_since(n) == []
    r = httpx.post(
        f"{fw.url}/fireworks/v1/accounts/{ACCOUNT}/{path}",
        content=b'{"dataset": "a", "dataset": "b"}',
        headers={"authorization": f"Bearer {CLIENT_TOKEN}", "content-type": "application/json"},
    )
    assert r.status_code == 400 and reason(r.json()) == "invalid_json" and fw.sent_since(n) == []


@pytest.mark.parametrize("planted", [EMAIL, IBAN])
@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("datasets", {"datasetId": "pii-{n}", "dataset": {"displayName": "{PII}", "format": "CHAT"}}),
        ("supervisedFineTuningJobs", {"dataset": "{DS}", "jinjaTemplate": "{{ messages }} {PII}"}),
        ("dpoJobs", {"dataset": "{DS}", "trainingConfig": {"outputModel": "m", "jinjaTemplate": "{PII}"}}),
        ("reinforcementFineTuningJobs", {"dataset": "{DS}", "evaluator": RFT_EVALUATOR,
                                          "inferenceParameters": {"extraBody": '{"user": "{PII}"}'}}),
    ],
)  # fmt: skip
def test_personal_data_in_any_create_body_never_leaves(fw: FEnv, path: str, payload: Any, planted: str) -> None:
    ds = upload(fw, jsonl(DPO if path == "dpoJobs" else RFT if "reinforcement" in path else chat("ok")))
    text = json.dumps(payload).replace("{PII}", planted).replace("{DS}", ds).replace("{n}", uuid.uuid4().hex[:6])
    n = fw.mark()
    r = raw_post(fw, path, json.loads(text))
    if planted == IBAN:
        assert r.status_code == 403 and reason(r.json()) == "policy_block" and fw.sent_since(n) == []
    else:
        assert r.status_code == 200, r.text
        [sent] = fw.sent_since(n)
        assert planted.encode() not in sent.body and "name" in r.json()
    assert planted not in r.text and planted not in fw.audit_text()


def test_job_body_personal_data_redacted(fw: FEnv) -> None:
    train = upload(fw, jsonl(chat("ok")))
    fw.client().supervised_fine_tuning_jobs.create(dataset=train, display_name=f"for {EMAIL}")
    sent = [r for r in fw.upstream.received if r.path.endswith("/supervisedFineTuningJobs")][-1].body
    assert EMAIL.encode() not in sent and train.encode() in sent


def test_unknown_routes_verbs_ids_and_query_parameters_are_refused(fw: FEnv) -> None:
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    base = f"{fw.url}/fireworks/v1/accounts/{ACCOUNT}"
    n = fw.mark()
    r = httpx.post(f"{base}/datasets/some-ds:export", headers=hdr)
    assert r.status_code == 403 and reason(r.json()) == "route_not_allowed" and r.json()["code"] == 7
    r = httpx.get(f"{base}/dpoJobs/job-1:getMetricsFileEndpoint", headers=hdr)  # an unknown GET :verb
    assert r.status_code == 400 and reason(r.json()) == "invalid_id"
    r = httpx.get(f"{base}/datasets/Not_An_Id", headers=hdr)
    assert r.status_code == 400 and reason(r.json()) == "invalid_id"
    r = httpx.get(f"{base}/datasets", params={"filter": EMAIL}, headers=hdr)
    assert r.status_code == 400 and EMAIL not in r.text
    r = httpx.get(f"{base}/supervisedFineTuningJobs", params={"apiKey": "x"}, headers=hdr)
    assert r.status_code == 400 and reason(r.json()) == "invalid_query"
    r = httpx.patch(f"{base}/datasets/some-ds", json={"externalUrl": "gs://b/o"}, headers=hdr)
    assert r.status_code == 403 and reason(r.json()) == "route_not_allowed"
    assert fw.sent_since(n) == []


def test_personal_data_to_a_jurisdiction_the_policy_forbids_is_refused(fw: FEnv) -> None:
    ds = new_dataset(fw, "fireworks_xx")
    n = fw.mark()
    status, body = refused(lambda: upload(fw, jsonl(chat("staff EMP-123456 asked")), ds=ds, upstream="fireworks_xx"))
    assert status == 403 and reason(body) == "residency" and fw.sent_since(n) == []


def test_gateway_held_key_replaces_the_client_key(tmp_path: Path, policy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TEST_FIREWORKS_KEY", PROVIDER_KEY)
    fake = FakeFireworks()
    with ServerThread(fake.app()) as up:
        gw, srv = start_gateway(
            tmp_path,
            policy,
            {
                "fireworks": {
                    "base_url": up.url,
                    "adapter": "fireworks",
                    "jurisdiction": "US",
                    "auth": {"mode": "replace", "api_key_env": "BASTION_TEST_FIREWORKS_KEY"},
                }
            },
        )
        try:
            env = FEnv(fake, SignedStore(), gw, srv.url, tmp_path)
            upload(env, jsonl(chat("held")))
            assert {r.headers["authorization"] for r in fake.received} == {f"Bearer {PROVIDER_KEY}"}
            assert PROVIDER_KEY not in env.audit_text() and CLIENT_TOKEN not in env.audit_text()
        finally:
            srv.stop()


def test_spec_knows_the_us_host_verb_routes_and_record_shapes() -> None:
    spec = get_provider("fireworks")
    assert spec.jurisdiction_for("https://api.fireworks.ai") == "US"
    matched = spec.match("GET", "/v1/accounts/acme/datasets/d1:getDownloadEndpoint")
    assert matched is not None and matched.route.name == "datasets.get_download_endpoint"
    assert dict(matched.params) == {"account_id": "acme", "dataset_id": "d1"}
    matched = spec.match("POST", "/v1/accounts/acme/reinforcementFineTuningJobs/j1:cancel")
    assert matched is not None and matched.route.name == "reinforcement_fine_tuning_jobs.cancel"
    assert spec.match("POST", "/v1/accounts/acme/datasets/d1:nope") is None
    assert record_problem(DPO) is None and record_problem(RFT) is None
    assert record_problem({"messages": []}) is not None
    assert record_problem({"input": {"messages": [{"role": "user", "content": "x"}]}}) is not None


def test_the_handed_out_upload_url_follows_a_local_tls_proxy(fw: FEnv) -> None:
    """Behind a TLS-terminating proxy on this machine (X-Forwarded-Proto), the gateway's upload URL says https."""
    ds = new_dataset(fw)
    r = httpx.post(
        f"{fw.url}/fireworks/v1/accounts/{ACCOUNT}/datasets/{ds}:getUploadEndpoint",
        json={"filenameToSize": {"train.jsonl": "100"}},
        headers={"authorization": f"Bearer {CLIENT_TOKEN}", "x-forwarded-proto": "https"},
    )
    url = r.json()["filenameToSignedUrls"]["train.jsonl"]
    assert r.status_code == 200 and url.startswith(f"https://{fw.url.removeprefix('http://')}/fireworks/v1/accounts/")
