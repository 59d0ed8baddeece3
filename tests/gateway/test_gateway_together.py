"""Together AI through the gateway with the official ``together`` SDK (3.1.x), only its ``base_url`` pointed at
the gateway, against a recording stand-in of ``api.together.ai`` on 127.0.0.1 that speaks Together's wire
protocol - including the redirect upload: ``POST /v1/files`` answers 302 with a presigned URL on a second
127.0.0.1 server (the "object store", which records what it received), the SDK PUTs the bytes there,
then calls ``/preprocess``."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from gw_support import CLIENT_TOKEN, EMAIL, IBAN, POLICY_YAML, PROVIDER_KEY, AuditLog, chat, jsonl, start_gateway
from gw_upstream import Received, parse_multipart, record_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from together import APIStatusError, AsyncTogether, Together

from bastion.adapters import get_provider
from bastion.adapters.together.records import record_problem
from bastion.gateway.app import Gateway
from bastion.gateway.serve import ServerThread
from bastion.policies import PolicyEngine, load_policy_text

HF_TOKEN = "hf_SECRETtokenABCDEFGHIJKLMNOPQRSTUVWXYZ0123"
WANDB_KEY = "wandb-secret-key-0123456789abcdef0123456789"
SIGNATURE = "X-Amz-Signature=feedface0123456789secret"
LIMITS = {
    "default_gradient_accumulation_steps": 1,
    "lora_training": {"default_rank": 8, "max_batch_size": 16, "max_batch_size_dpo": 8, "max_rank": 64,
                      "min_batch_size": 1, "target_modules": ["q_proj"]},
    "full_training": {"max_batch_size": 16, "max_batch_size_dpo": 8, "min_batch_size": 1},
    "max_learning_rate": 1.0, "max_num_checkpoints": 10, "max_num_epochs": 20, "max_num_evals": 10,
    "max_seq_length_dpo": 8192, "max_seq_length_sft": 8192, "merge_output_lora": False, "min_learning_rate": 0.0,
    "min_max_seq_length": 512, "model_name": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "supports_full_training": True, "supports_reasoning": False, "supports_tools": True, "supports_vision": False,
}  # fmt: skip
MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


_ENGINE = PolicyEngine(load_policy_text(POLICY_YAML, source="gateway-tests.yaml"))


def new_id(prefix: str) -> str:
    """A Together-shaped id (``file-<uuid>``, ``ft-<uuid>``) the test policy finds nothing in.

    About 0.6% of random UUIDs have digit groups the card/phone detectors match; the gateway refuses such a
    path id as personal data (a known false positive, reported), which would make these tests flaky.
    """
    while True:
        value = f"{prefix}-{uuid.uuid4()}"
        if not _ENGINE.scan_record({"id": value}, 0).findings:
            return value


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                   "code": None}}, status_code=status)  # fmt: skip


@dataclass
class FakeStore:
    """The presigned object store: takes a PUT of raw bytes to an upload URL, answers 200 with an ETag."""

    received: list[Received] = field(default_factory=list)
    objects: dict[str, bytes] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def put(request: Request) -> Response:
            rec = await record_request(request, self.received, self.lock)
            if SIGNATURE not in rec.query or int(rec.headers.get("content-length", "-1")) != len(rec.body):
                return Response(b"<Error><Code>SignatureDoesNotMatch</Code></Error>", status_code=403)
            self.objects[request.path_params["fid"]] = rec.body
            return Response(b"", headers={"etag": '"' + hashlib.md5(rec.body).hexdigest() + '"'})

        return Starlette(routes=[Route("/bucket/{fid}", put, methods=["PUT"])])


@dataclass
class FakeTogether:
    """Records every request; files (redirect flow and direct form) and fine-tune jobs kept in memory."""

    store: FakeStore
    store_url: str = ""
    received: list[Received] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_ids: list[str] = field(default_factory=list)  # file ids to hand out next (else new_id)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def file_obj(self, fid: str, name: str, purpose: str, size: int) -> dict[str, Any]:
        return {"id": fid, "object": "file", "bytes": size, "created_at": int(time.time()), "filename": name,
                "FileType": "jsonl", "purpose": purpose, "processing_status": "COMPLETED"}  # fmt: skip

    def content(self, fid: str) -> bytes:
        return self.store.objects[fid]

    def app(self) -> Starlette:
        async def record(request: Request) -> Received:
            return await record_request(request, self.received, self.lock)

        async def files_create(request: Request) -> Response:
            rec = await record(request)
            parts = parse_multipart(rec.headers.get("content-type", ""), rec.body)
            if "file" in parts or {"purpose", "file_name", "file_type"} - set(parts):
                return _error(400, "purpose, file_name and file_type are required")
            checksum = parts["checksum"][1].decode() if "checksum" in parts else ""
            if checksum and checksum in self.checksums:
                return JSONResponse({"message": "file exists", "file_id": self.checksums[checksum]}, status_code=409)
            fid = self.next_ids.pop(0) if self.next_ids else new_id("file")
            self.files[fid] = self.file_obj(fid, parts["file_name"][1].decode(), parts["purpose"][1].decode(), 0)
            if checksum:
                self.checksums[checksum] = fid
            location = f"{self.store_url}/bucket/{fid}?X-Amz-Expires=3600&{SIGNATURE}"
            return Response(b"", status_code=302, headers={"location": location, "x-together-file-id": fid})

        async def files_upload(request: Request) -> Response:
            rec = await record(request)
            parts = parse_multipart(rec.headers["content-type"], rec.body)
            if int(rec.headers.get("content-length", "-1")) != len(rec.body) or "file" not in parts:
                return _error(400, "a multipart form with 'file' and an exact Content-Length is required")
            fid = new_id("file")
            data = parts["file"][1]
            self.store.objects[fid] = data
            self.files[fid] = self.file_obj(
                fid, parts["file_name"][1].decode(), parts["purpose"][1].decode(), len(data)
            )
            return JSONResponse(self.files[fid])

        async def preprocess(request: Request) -> Response:
            await record(request)
            fid = request.path_params["fid"]
            if fid not in self.files or fid not in self.store.objects:
                return _error(400, "the file's bytes were never uploaded")
            self.files[fid]["bytes"] = len(self.store.objects[fid])
            return JSONResponse(self.files[fid])

        async def files_list(request: Request) -> Response:
            await record(request)
            return JSONResponse({"data": list(self.files.values())})

        async def file_one(request: Request) -> Response:
            await record(request)
            fid = request.path_params["fid"]
            if fid not in self.files:
                return _error(404, "file not found")
            if request.method == "DELETE":
                del self.files[fid]
                return JSONResponse({"id": fid, "deleted": True})
            if request.url.path.endswith("/content"):
                return Response(self.store.objects.get(fid, b""), media_type="application/octet-stream")
            return JSONResponse(self.files[fid])

        def job_obj(body: dict[str, Any]) -> dict[str, Any]:
            now = "2026-11-29T12:00:00Z"
            return {"id": new_id("ft"), "created_at": now, "updated_at": now, "status": "pending",
                    "model": body.get("model"), "training_file": body["training_file"],
                    "validation_file": body.get("validation_file"), "model_output_name": "acme/out",
                    "adapter_output_name": None, "n_epochs": body.get("n_epochs"),
                    "training_method": body.get("training_method"), "suffix": body.get("suffix")}  # fmt: skip

        async def jobs(request: Request) -> Response:
            rec = await record(request)
            if request.method == "GET":
                return JSONResponse({"data": list(self.jobs.values())})
            body = json.loads(rec.body)
            for ref in (body["training_file"], body.get("validation_file")):
                if ref and ref not in self.files:
                    return _error(404, "file not found")
            job = job_obj(body)
            self.jobs[job["id"]] = job
            return JSONResponse(job)

        async def job(request: Request) -> Response:
            await record(request)
            found = self.jobs.get(request.path_params["jid"])
            if found is None:
                return _error(404, "job not found")
            action = request.path_params.get("action")
            if action == "cancel":
                found["status"] = "cancel_requested"
            elif action == "events":
                event = {"created_at": "2026-11-29T12:00:01Z", "message": "Job queued", "object": "fine-tune-event",
                         "type": "job_pending", "level": "info"}  # fmt: skip
                return JSONResponse({"data": [event]})
            elif action == "checkpoints":
                return JSONResponse({"data": []})
            elif request.method == "DELETE":
                del self.jobs[found["id"]]
                return JSONResponse({"message": "deleted"})
            return JSONResponse(found)

        async def limits(request: Request) -> Response:
            await record(request)
            return JSONResponse(LIMITS)

        async def estimate(request: Request) -> Response:
            rec = await record(request)
            if json.loads(rec.body)["training_file"] not in self.files:
                return _error(404, "file not found")
            return JSONResponse({"estimation_available": True, "allowed_to_proceed": True,
                                 "estimated_total_price": 1.5})  # fmt: skip

        return Starlette(
            routes=[
                Route("/v1/files", files_create, methods=["POST"]),
                Route("/v1/files", files_list, methods=["GET"]),
                Route("/v1/files/upload", files_upload, methods=["POST"]),
                Route("/v1/files/{fid}/preprocess", preprocess, methods=["POST"]),
                Route("/v1/files/{fid}", file_one, methods=["GET", "DELETE"]),
                Route("/v1/files/{fid}/content", file_one, methods=["GET"]),
                Route("/v1/fine-tunes/models/limits", limits, methods=["GET"]),
                Route("/v1/fine-tunes/estimate-price", estimate, methods=["POST"]),
                Route("/v1/fine-tunes", jobs, methods=["GET", "POST"]),
                Route("/v1/fine-tunes/{jid}", job, methods=["GET", "DELETE"]),
                Route("/v1/fine-tunes/{jid}/{action}", job, methods=["GET", "POST"]),
            ]
        )


@dataclass
class TEnv(AuditLog):
    upstream: FakeTogether
    store: FakeStore
    gateway: Gateway
    url: str
    state_dir: Path

    def client(self, upstream: str = "together", **kw: Any) -> Together:
        kw.setdefault("api_key", CLIENT_TOKEN)
        return Together(base_url=f"{self.url}/{upstream}", max_retries=0, **kw)

    def marks(self) -> tuple[int, int]:
        return len(self.upstream.received), len(self.store.received)

    def nothing_since(self, mark: tuple[int, int]) -> bool:
        return self.upstream.received[mark[0] :] == [] and self.store.received[mark[1] :] == []


def _upstream(api: str, store: str, **extra: Any) -> dict[str, Any]:
    return {"base_url": api, "adapter": "together", "hosts": {"uploads": store}, "jurisdiction": "US", **extra}


@pytest.fixture(scope="module")
def tog(tmp_path_factory: pytest.TempPathFactory, policy: Any) -> Iterator[TEnv]:
    store = FakeStore()
    with ServerThread(store.app()) as st:
        fake = FakeTogether(store, st.url)
        with ServerThread(fake.app()) as up:
            tmp = tmp_path_factory.mktemp("together")
            gw, srv = start_gateway(
                tmp,
                policy,
                {
                    "together": _upstream(up.url, st.url),
                    "together_xx": _upstream(up.url, st.url, jurisdiction="XX"),
                },
            )
            try:
                yield TEnv(fake, store, gw, srv.url, tmp)
            finally:
                srv.stop()


def upload(env: TEnv, tmp: Path, data: bytes, name: str = "train.jsonl", upstream: str = "together", **kw: Any) -> Any:
    path = tmp / name
    path.write_bytes(data)
    return env.client(upstream).files.upload(file=path, purpose="fine-tune", **kw)


def refused(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(APIStatusError) as info:
        call()
    body = info.value.body
    return info.value.status_code, body if isinstance(body, dict) else json.loads(body)


def err(body: dict[str, Any]) -> dict[str, Any]:
    inner = body.get("error", body)
    assert isinstance(inner, dict)
    return inner


# -- the redirect upload --------------------------------------------------------------------------------
def test_clean_file_arrives_byte_identical_on_the_object_store(tog: TEnv, tmp_path: Path) -> None:
    tool_call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    data = jsonl(
        chat("What is the capital of France?", "Paris."),
        {
            "messages": [
                {"role": "system", "content": "You call tools."},
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": "", "tool_calls": [tool_call], "weight": 0},
                {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
                {"role": "assistant", "content": "Sunny.", "reasoning": "the tool said so", "weight": 1},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        },
        {"prompt": "2+2=", "completion": "4"},
    )
    mark = tog.marks()
    f = upload(tog, tmp_path, data)
    assert f.id.startswith("file-") and f.bytes == len(data) and f.purpose == "fine-tune"
    assert tog.store.objects[f.id] == data  # byte-identical at the object store
    [put] = tog.store.received[mark[1] :]
    assert "authorization" not in put.headers and put.headers["content-length"] == str(len(data))
    assert "content-type" not in put.headers  # as the SDK sends it: a presigned URL may sign Content-Type
    calls = [f"{r.method} {r.path}" for r in tog.upstream.received[mark[0] :]]
    assert calls == ["POST /v1/files", f"POST /v1/files/{f.id}/preprocess"]
    create = tog.upstream.received[mark[0]]
    assert create.headers["authorization"] == f"Bearer {CLIENT_TOKEN}"
    form = parse_multipart(create.headers["content-type"], create.body)
    assert {k: v[1].decode() for k, v in form.items()} == {
        "purpose": "fine-tune",
        "file_name": "train.jsonl",
        "file_type": "jsonl",
        "checksum": hashlib.sha256(data).hexdigest(),
    }
    client = [e["data"]["client"] for e in tog.audit_entries() if e["data"]["route"] == "files.preprocess"][-1]
    admitted = tog.gateway.state.admitted("together", f.id, client=client)
    assert admitted is not None and admitted.purpose == "fine-tune" and admitted.records == 3
    # the presigned URL (a bearer capability) is in no log and no audit entry
    assert SIGNATURE not in tog.audit_text()


def test_personal_data_is_redacted_before_it_reaches_the_store(tog: TEnv, tmp_path: Path) -> None:
    f = upload(tog, tmp_path, jsonl(chat(f"write to {EMAIL}"), chat("nothing here")), name=f"{EMAIL}.jsonl")
    stored = tog.store.objects[f.id]
    assert EMAIL.encode() not in stored and b"nothing here" in stored
    create = [r for r in tog.upstream.received if r.path == "/v1/files" and r.method == "POST"][-1]
    form = parse_multipart(create.headers["content-type"], create.body)
    assert form["checksum"][1].decode() == hashlib.sha256(stored).hexdigest()  # of what Together stores
    assert EMAIL.encode() not in form["file_name"][1] and form["file_name"][1].startswith(b"upload-")
    entry = [e["data"] for e in tog.audit_entries() if e["data"]["route"] == "files.preprocess"][-1]
    assert entry["decision"] == "redact" and entry["outcome"] == "forwarded" and entry["file_id"] == f.id
    assert EMAIL not in tog.audit_text()


def test_blocked_file_never_arrives_at_the_api_or_the_store(tog: TEnv, tmp_path: Path) -> None:
    mark = tog.marks()
    status, body = refused(lambda: upload(tog, tmp_path, jsonl(chat("hi"), chat(f"my IBAN is {IBAN}"))))
    assert status == 403 and err(body)["code"] == "policy_block" and "record(s): 2" in err(body)["message"]
    assert IBAN not in json.dumps(body) and tog.nothing_since(mark)
    assert IBAN not in tog.audit_text()
    # the refused upload is gone: nothing is held for it
    put = [e["data"] for e in tog.audit_entries() if e["data"]["route"] == "files.upload.bytes"][-1]
    assert put["outcome"] == "refused_before_forwarding"
    assert tog.gateway.state.upload_get(put["upload_id"]) is None


def test_async_client_goes_through_the_same_rewrite(tog: TEnv, tmp_path: Path) -> None:
    path = tmp_path / "async.jsonl"
    path.write_bytes(jsonl(chat(f"async {EMAIL}"), chat("fine")))

    async def go() -> Any:
        async with AsyncTogether(api_key=CLIENT_TOKEN, base_url=f"{tog.url}/together", max_retries=0) as c:
            return await c.files.upload(file=path, purpose="fine-tune")

    mark = tog.marks()
    f = asyncio.run(go())
    assert EMAIL.encode() not in tog.store.objects[f.id] and b"fine" in tog.store.objects[f.id]
    assert len(tog.store.received) == mark[1] + 1


def test_the_upload_url_is_a_one_time_capability(tog: TEnv) -> None:
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    r = httpx.post(
        f"{tog.url}/together/v1/files",
        files={"purpose": (None, "fine-tune"), "file_name": (None, "t.jsonl"), "file_type": (None, "jsonl")},
        headers=hdr,
    )
    assert r.status_code == 302 and r.headers["x-together-file-id"].startswith("bastion-upload-")
    location = r.headers["location"]
    assert location.startswith(f"{tog.url}/together/bastion/uploads/")
    mark = tog.marks()
    wrong = location.rsplit("sig=", 1)[0] + "sig=" + "a" * 40
    assert httpx.put(wrong, content=jsonl(chat("x"))).status_code == 404
    assert httpx.put(location, content=jsonl(chat("x"))).status_code == 200
    second = httpx.put(location, content=jsonl(chat("y")))
    assert second.status_code == 409 and second.json()["error"]["code"] == "upload_not_pending"
    assert tog.nothing_since(mark)  # scanning and holding sends nothing anywhere
    fid = r.headers["x-together-file-id"]
    other = httpx.post(f"{tog.url}/together/v1/files/{fid}/preprocess", headers={"authorization": "Bearer sk-other1"})
    assert other.status_code == 404 and tog.nothing_since(mark)  # bound to the client that opened it
    done = httpx.post(f"{tog.url}/together/v1/files/{fid}/preprocess", headers=hdr)
    again = httpx.post(f"{tog.url}/together/v1/files/{fid}/preprocess", headers=hdr)
    assert done.status_code == 200 and again.json() == done.json() and done.json()["id"].startswith("file-")
    assert len(tog.store.received) == mark[1] + 1  # the replay did not send the file twice


def test_same_bytes_again_reuse_togethers_file(tog: TEnv, tmp_path: Path) -> None:
    data = jsonl(chat("deduplicated"))
    first = upload(tog, tmp_path, data)
    mark = tog.marks()
    second = upload(tog, tmp_path, data, name="again.jsonl")
    assert second.id == first.id and tog.store.received[mark[1] :] == []  # Together answered 409: file exists


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'{"messages": [{"role": "user", "content": "hi"}]\n', "record 1"),
        (jsonl({"messages": [{"role": "robot", "content": "hi"}]}), "messages[0].role"),
        (jsonl({"messages": [{"role": "user", "content": "hi", "extra": 1}]}), "does not know"),
        (jsonl({"text": "a", "prompt": "b", "completion": "c"}), "mixes two formats"),
        (jsonl({"prompt": "a"}), "'prompt' and 'completion'"),
        (jsonl({"input": {"messages": [{"role": "user", "content": "q"}]}, "preferred_output": []}), "preference"),
        (jsonl({"input": 1, "preferred_output": [], "non_preferred_output": []}), "'input' must be an object"),
        (jsonl({"question": "a"}), "not a Together fine-tuning record"),
    ],
)
def test_malformed_records_refused_before_anything_leaves(tog: TEnv, tmp_path: Path, data: bytes, where: str) -> None:
    mark = tog.marks()
    status, body = refused(lambda: upload(tog, tmp_path, data, check=False))
    assert status == 400 and where in err(body)["message"], body
    assert tog.nothing_since(mark)


def test_preference_records_pass(tog: TEnv, tmp_path: Path) -> None:
    record = {
        "input": {"messages": [{"role": "user", "content": "Best colour?"}]},
        "preferred_output": [{"role": "assistant", "content": "Blue."}],
        "non_preferred_output": [{"role": "assistant", "content": "No idea."}],
    }
    f = upload(tog, tmp_path, jsonl(record, {**record, "preferred_output": [{"role": "assistant", "content": "Red"}]}))
    assert tog.store.objects[f.id].count(b"\n") == 2


def test_wrong_purpose_csv_and_unknown_fields_refused(tog: TEnv, tmp_path: Path) -> None:
    mark = tog.marks()
    path = tmp_path / "eval.jsonl"
    path.write_bytes(jsonl(chat("x")))
    status, body = refused(lambda: tog.client().files.upload(file=path, purpose="eval"))
    assert status == 403 and err(body)["code"] == "purpose_not_allowed"
    csv = tmp_path / "train.csv"
    csv.write_text("text\nhello\n")
    status, body = refused(lambda: tog.client().files.upload(file=csv, purpose="fine-tune", check=False))
    assert status == 415 and err(body)["code"] == "file_type_not_scanned"
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    fields = {"purpose": (None, "fine-tune"), "file_name": (None, "t.jsonl"), "note": (None, EMAIL)}
    r = httpx.post(f"{tog.url}/together/v1/files", files=fields, headers=hdr)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_upload" and EMAIL not in r.text
    r = httpx.post(f"{tog.url}/together/v1/files/multipart/initiate", json={"file_name": "big.jsonl"}, headers=hdr)
    assert r.status_code == 403 and r.json()["error"]["code"] == "upload_flow_not_supported"
    assert tog.nothing_since(mark)


def test_personal_data_to_a_jurisdiction_the_policy_forbids_is_refused(tog: TEnv, tmp_path: Path) -> None:
    mark = tog.marks()
    status, body = refused(lambda: upload(tog, tmp_path, jsonl(chat("staff EMP-123456 asked")), upstream="together_xx"))
    assert status == 403 and err(body)["code"] == "residency" and tog.nothing_since(mark)
    assert upload(tog, tmp_path, jsonl(chat("staff EMP-123456 asked"))).id  # the US upstream may take it


def test_direct_form_upload_is_scanned_and_reframed(tog: TEnv) -> None:
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    data = jsonl(chat(f"mail {EMAIL}"), {"text": "plain text"})
    files = {"file": (f"{EMAIL}.jsonl", data, "application/jsonl")}
    form = {"purpose": "fine-tune", "file_name": f"{EMAIL}.jsonl", "file_type": "jsonl"}
    n = len(tog.upstream.received)
    r = httpx.post(f"{tog.url}/together/v1/files/upload", data=form, files=files, headers=hdr)
    assert r.status_code == 200, r.text
    [rec] = tog.upstream.received[n:]
    parts = parse_multipart(rec.headers["content-type"], rec.body)
    assert EMAIL.encode() not in parts["file"][1] and b"plain text" in parts["file"][1]
    assert EMAIL not in (parts["file"][0] or "") and EMAIL.encode() not in parts["file_name"][1]
    n = len(tog.upstream.received)
    blocked = {"file": ("t.jsonl", jsonl(chat("ok"), chat(f"IBAN {IBAN}")), "application/jsonl")}
    r = httpx.post(f"{tog.url}/together/v1/files/upload", data=form, files=blocked, headers=hdr)
    assert r.status_code == 403 and r.json()["error"]["code"] == "policy_block" and IBAN not in r.text
    r = httpx.post(
        f"{tog.url}/together/v1/files/upload",
        data={**form, "file_type": "parquet"},
        files={"file": ("t.parquet", b"PAR1", "application/octet-stream")},
        headers=hdr,
    )
    assert r.status_code == 415 and tog.upstream.received[n:] == []


def test_files_list_retrieve_content_delete_pass_through(tog: TEnv, tmp_path: Path) -> None:
    c = tog.client()
    f = upload(tog, tmp_path, jsonl(chat("listing")))
    assert f.id in [x.id for x in c.files.list().data]
    assert c.files.retrieve(f.id).id == f.id
    assert c.files.content(f.id).read() == tog.store.objects[f.id]
    assert c.files.delete(f.id).deleted is True
    mark = tog.marks()
    for bad in ("../etc", "a b", f"file-{EMAIL}"):
        r = httpx.get(f"{tog.url}/together/v1/files/{bad}", headers={"authorization": f"Bearer {CLIENT_TOKEN}"})
        assert r.status_code in (400, 403) and EMAIL not in r.text, bad
    assert tog.nothing_since(mark)


# -- fine-tune jobs -------------------------------------------------------------------------------------
def test_job_lifecycle_on_admitted_files(tog: TEnv, tmp_path: Path) -> None:
    c = tog.client()
    train = upload(tog, tmp_path, jsonl(chat("train")))
    val = upload(tog, tmp_path, jsonl(chat("validate")), name="val.jsonl")
    job = c.fine_tuning.create(training_file=train.id, validation_file=val.id, model=MODEL, n_evals=1, suffix="t")
    sent = json.loads([r for r in tog.upstream.received if r.path == "/v1/fine-tunes"][-1].body)
    assert sent["training_file"] == train.id and sent["validation_file"] == val.id
    assert c.fine_tuning.retrieve(job.id).id == job.id
    assert job.id in [j.id for j in c.fine_tuning.list().data]
    assert [e.message for e in c.fine_tuning.list_events(job.id).data] == ["Job queued"]
    assert c.fine_tuning.cancel(job.id).status == "cancel_requested"
    assert c.fine_tuning.list_checkpoints(job.id).data == []
    c.fine_tuning.delete(job.id)
    assert job.id not in tog.upstream.jobs
    entry = [e["data"] for e in tog.audit_entries() if e["data"]["route"] == "fine_tuning.create"][-1]
    assert entry["outcome"] == "forwarded" and set(entry["files"]) == {"training_file", "validation_file"}
    assert entry["residency"]["jurisdiction"] == "US" and entry["job_method"] == "sft"


def test_dpo_job_without_validation_file(tog: TEnv, tmp_path: Path) -> None:
    record = {
        "input": {"messages": [{"role": "user", "content": "Best colour?"}]},
        "preferred_output": [{"role": "assistant", "content": "Blue."}],
        "non_preferred_output": [{"role": "assistant", "content": "No idea."}],
    }
    train = upload(tog, tmp_path, jsonl(record))
    job = tog.client().fine_tuning.create(training_file=train.id, model=MODEL, training_method="dpo", dpo_beta=0.1)
    sent = json.loads([r for r in tog.upstream.received if r.path == "/v1/fine-tunes"][-1].body)
    assert job.id and sent["training_method"]["method"] == "dpo" and sent["validation_file"] == ""


def test_admitted_file_ids_are_not_taken_for_personal_data(tog: TEnv, tmp_path: Path) -> None:
    # a UUID is never read as a number any more; this id glues a Luhn-valid card number between letters
    card_like = "file-ab4539148803436467cdef"
    assert _ENGINE.scan_record({"id": card_like}, 0).findings
    tog.upstream.next_ids.append(card_like)
    train = upload(tog, tmp_path, jsonl(chat("an id that looks like a card")))
    assert train.id == card_like
    job = tog.client().fine_tuning.create(training_file=train.id, model=MODEL, suffix=f"for {EMAIL}")
    sent = json.loads([r for r in tog.upstream.received if r.path == "/v1/fine-tunes"][-1].body)
    assert job.id and sent["training_file"] == card_like  # checked by admission, not redacted or blocked
    assert EMAIL not in sent["suffix"]  # the other fields are still scanned


@pytest.mark.parametrize("where", ["training", "validation"])
def test_job_on_an_unscanned_file_is_refused(tog: TEnv, tmp_path: Path, where: str) -> None:
    train = upload(tog, tmp_path, jsonl(chat("ok")))
    stranger = new_id("file")
    tog.upstream.files[stranger] = tog.upstream.file_obj(stranger, "x.jsonl", "fine-tune", 10)  # exists upstream
    files = {"training_file": stranger} if where == "training" else {"training_file": train.id}
    n = len(tog.upstream.received)
    status, body = refused(
        lambda: tog.client().fine_tuning.create(model=MODEL, validation_file=stranger, n_evals=1, **files)
    )
    assert status == 403 and err(body)["code"] == "unscanned_file"
    assert [r.path for r in tog.upstream.received[n:]] == ["/v1/fine-tunes/models/limits"]  # the SDK's first call


def test_held_upload_id_is_not_an_admitted_file(tog: TEnv) -> None:
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    r = httpx.post(
        f"{tog.url}/together/v1/files",
        files={"purpose": (None, "fine-tune"), "file_name": (None, "t.jsonl")},
        headers=hdr,
    )
    held = r.headers["x-together-file-id"]
    r = httpx.post(f"{tog.url}/together/v1/files/{held}/preprocess", headers=hdr)
    assert r.status_code == 409 and r.json()["error"]["code"] == "upload_not_received"
    r = httpx.post(f"{tog.url}/together/v1/fine-tunes", json={"model": MODEL, "training_file": held}, headers=hdr)
    assert r.status_code == 403 and r.json()["error"]["code"] == "unscanned_file"


def _secret_free(env: TEnv, secret: str, caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    assert all(secret not in t for t in texts)
    # the gateway's own log (the together SDK's debug log, in this same process, shows what the client sent)
    assert all(secret not in r.getMessage() for r in caplog.records if not r.name.startswith("together"))
    assert all(secret.encode() not in p.read_bytes() for p in env.state_dir.rglob("*") if p.is_file())
    assert all(secret.encode() not in r.body for r in env.upstream.received)


def test_from_hf_model_refused_and_the_hf_token_never_written(
    tog: TEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    train = upload(tog, tmp_path, jsonl(chat("ok")))
    n = len(tog.upstream.received)
    status, body = refused(
        lambda: tog.client().fine_tuning.create(
            training_file=train.id, model=MODEL, from_hf_model="acme/private-model", hf_api_token=HF_TOKEN
        )
    )
    # the credential is refused first: it is never scanned, logged or forwarded
    assert status == 403 and err(body)["code"] == "credential_in_body" and err(body)["param"] == "hf_api_token"
    assert [r.path for r in tog.upstream.received[n:] if r.path == "/v1/fine-tunes"] == []
    status, body = refused(
        lambda: tog.client().fine_tuning.create(training_file=train.id, model=MODEL, from_hf_model="acme/public")
    )
    assert status == 403 and err(body)["code"] == "provider_pull_refused" and err(body)["param"] == "from_hf_model"
    status, body = refused(
        lambda: tog.client().fine_tuning.create(training_file=train.id, model=MODEL, hf_output_repo_name="acme/out")
    )
    assert status == 403 and err(body)["code"] == "provider_push_refused"
    assert [r.path for r in tog.upstream.received[n:] if r.path == "/v1/fine-tunes"] == []
    entry = [e["data"] for e in tog.audit_entries() if e["data"]["route"] == "fine_tuning.create"][-3]
    assert entry["outcome"] == "refused_before_forwarding" and entry["reason"] == "credential_in_body"
    _secret_free(tog, HF_TOKEN, caplog, json.dumps(body))


def test_wandb_key_refused_and_never_written(tog: TEnv, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    train = upload(tog, tmp_path, jsonl(chat("ok")))
    status, body = refused(
        lambda: tog.client().fine_tuning.create(
            training_file=train.id, model=MODEL, wandb_api_key=WANDB_KEY, wandb_project_name="ft"
        )
    )
    assert status == 403 and err(body)["code"] == "credential_in_body" and err(body)["param"] == "wandb_key"
    _secret_free(tog, WANDB_KEY, caplog, json.dumps(body))


def test_policy_options_allow_hf_model_and_strip_credentials(
    tmp_path: Path, policy: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = FakeStore()
    with ServerThread(store.app()) as st:
        fake = FakeTogether(store, st.url)
        with ServerThread(fake.app()) as up:
            spec = get_provider("together")
            allow = sorted(spec.default_on | {"fine_tuning.from_hf_model", "fine_tuning.strip_credentials"})
            gw, srv = start_gateway(tmp_path, policy, {"together": _upstream(up.url, st.url)}, allow_routes=allow)
            try:
                env = TEnv(fake, store, gw, srv.url, tmp_path)
                train = upload(env, tmp_path, jsonl(chat("ok")))
                job = env.client().fine_tuning.create(
                    training_file=train.id,
                    model=MODEL,
                    from_hf_model="acme/public-model",
                    hf_api_token=HF_TOKEN,
                    wandb_api_key=WANDB_KEY,
                )
                sent = json.loads([r for r in fake.received if r.path == "/v1/fine-tunes"][-1].body)
                assert job.id and sent["from_hf_model"] == "acme/public-model"
                assert "hf_api_token" not in sent and "wandb_key" not in sent
                entry = [e["data"] for e in env.audit_entries() if e["data"]["route"] == "fine_tuning.create"][-1]
                assert entry["stripped_fields"] == ["wandb_key", "hf_api_token"]
                for secret in (HF_TOKEN, WANDB_KEY):
                    _secret_free(env, secret, caplog)
            finally:
                srv.stop()


@pytest.mark.parametrize(
    ("payload", "code", "param"),
    [
        (b'{"model": "m", "model": "n"}', "invalid_json", None),
        (b'{"model": "m", "training_file": ', "invalid_json", None),
        (b"[]", "invalid_request", None),
        (b'{"model": "m", "training_file": "file-abc", "notes": "x"}', "invalid_request", None),
        (b'{"model": "m"}', "invalid_request", "training_file"),
        (b'{"training_file": "file-abc"}', "invalid_request", None),
        (b'{"model": "m", "training_file": "file-abc", "training_method": {"method": "rlhf"}}', "invalid_request",
         "training_method"),
        (b'{"model": "m", "training_file": "../x"}', "invalid_request", "training_file"),
    ],
)  # fmt: skip
def test_bad_job_bodies_get_a_clear_error(tog: TEnv, payload: bytes, code: str, param: str | None) -> None:
    n = len(tog.upstream.received)
    r = httpx.post(
        f"{tog.url}/together/v1/fine-tunes",
        content=payload,
        headers={"authorization": f"Bearer {CLIENT_TOKEN}", "content-type": "application/json"},
    )
    body = r.json()["error"]
    assert r.status_code == 400 and body["code"] == code, body
    if param is not None:
        assert body["param"] == param
    assert tog.upstream.received[n:] == []


def test_unknown_routes_and_bad_ids_are_refused(tog: TEnv) -> None:
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    n = len(tog.upstream.received)
    r = httpx.post(f"{tog.url}/together/v1/fine-tunes/ft-0b9f5f0e-1c2d/pause", headers=hdr)
    assert r.status_code == 403 and r.json()["error"]["code"] == "route_not_allowed"
    r = httpx.post(f"{tog.url}/together/v1/files/multipart/complete", json={}, headers=hdr)
    assert r.status_code == 403 and r.json()["error"]["code"] == "route_not_allowed"
    r = httpx.get(f"{tog.url}/together/v1/fine-tunes/job-1", headers=hdr)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_id"
    r = httpx.get(f"{tog.url}/together/v1/fine-tunes/models/limits", params={"model_name": EMAIL}, headers=hdr)
    assert r.status_code == 400 and EMAIL not in r.text
    r = httpx.put(f"{tog.url}/together/bastion/uploads/bastion-upload-{'0' * 24}", content=b"{}")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_query"  # no capability
    assert tog.upstream.received[n:] == []


def test_gateway_held_key_replaces_the_client_key(tmp_path: Path, policy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TEST_TOGETHER_KEY", PROVIDER_KEY)
    store = FakeStore()
    with ServerThread(store.app()) as st:
        fake = FakeTogether(store, st.url)
        with ServerThread(fake.app()) as up:
            auth = {"mode": "replace", "api_key_env": "BASTION_TEST_TOGETHER_KEY"}
            fingerprint = "sha256:" + hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest()[:16]
            gw, srv = start_gateway(
                tmp_path,
                policy,
                {"together": _upstream(up.url, st.url, auth=auth)},
                allowed_clients=[fingerprint],  # the SDK's credential-less PUT still works: the URL is the capability
            )
            try:
                env = TEnv(fake, store, gw, srv.url, tmp_path)
                f = upload(env, tmp_path, jsonl(chat("held")))
                assert store.objects[f.id] == jsonl(chat("held"))
                assert all(r.headers["authorization"] == f"Bearer {PROVIDER_KEY}" for r in fake.received)
                assert all("authorization" not in r.headers for r in store.received)  # never the key to the store
                assert PROVIDER_KEY not in env.audit_text() and CLIENT_TOKEN not in env.audit_text()
            finally:
                srv.stop()


def test_upload_url_on_an_unknown_host_is_not_followed(tmp_path: Path, policy: Any) -> None:
    store = FakeStore()
    with ServerThread(store.app()) as st:
        fake = FakeTogether(store, st.url)
        with ServerThread(fake.app()) as up:
            gw, srv = start_gateway(
                tmp_path, policy, {"together": {"base_url": up.url, "adapter": "together", "jurisdiction": "US"}}
            )
            try:
                env = TEnv(fake, store, gw, srv.url, tmp_path)
                status, body = refused(lambda: upload(env, tmp_path, jsonl(chat("ok"))))
                assert status == 502 and err(body)["code"] == "upload_host_not_allowed"
                assert "127.0.0.1" in err(body)["message"] and SIGNATURE not in json.dumps(body)
                assert store.received == []
            finally:
                srv.stop()


def test_spec_knows_the_us_hosts_and_record_shapes() -> None:
    spec = get_provider("together")
    assert spec.jurisdiction_for("https://api.together.ai") == "US"
    assert {"files.upload", "files.preprocess", "fine_tuning.create", "fine_tuning.from_hf_model"} <= spec.names
    assert record_problem({"text": "x"}) is None
    assert record_problem({"messages": [{"role": "user", "content": "x", "weight": 2}]}) is not None
    assert record_problem({"messages": [{"role": "user", "content": "x", "reasoning": "r"}]}) is not None
