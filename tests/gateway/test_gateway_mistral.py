"""Mistral through the gateway with the official ``mistralai`` SDK (2.4.x: the last line that still ships
``fine_tuning.jobs``), only its ``server_url`` pointed at the gateway, against a recording stand-in of
``api.mistral.ai`` on 127.0.0.1 that speaks Mistral's wire protocol (multipart files, file and job
objects as the SDK parses them, Mistral's error shape)."""

from __future__ import annotations

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
from gw_support import CLIENT_TOKEN, EMAIL, IBAN, PROVIDER_KEY, AuditLog, chat, jsonl, start_gateway
from gw_upstream import Received, parse_multipart, record_request
from mistralai.client import Mistral
from mistralai.client.errors import MistralError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.adapters import get_provider
from bastion.adapters.mistral.spec import record_problem
from bastion.gateway.app import Gateway
from bastion.gateway.serve import ServerThread

GITHUB_TOKEN = "ghp_SECRETgithubTOKEN0123456789abcdefABCD"
WANDB_KEY = "wandb-secret-key-0123456789abcdef0123456789"
HYPER = {"training_steps": 10, "learning_rate": 0.0001}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"object": "error", "message": message, "type": "invalid_request_error", "param": None,
                         "code": None}, status_code=status)  # fmt: skip


@dataclass
class FakeMistral:
    """Records every request (method, path, headers, raw body); files and jobs kept in memory."""

    received: list[Received] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Starlette:
        async def record(request: Request) -> Received:
            return await record_request(request, self.received, self.lock)

        async def files_upload(request: Request) -> Response:
            rec = await record(request)
            ct = rec.headers.get("content-type", "")
            if not ct.startswith("multipart/form-data") or int(rec.headers.get("content-length", "-1")) != len(
                rec.body
            ):
                return _error(400, "expected a multipart/form-data body with an exact Content-Length")
            parts = parse_multipart(ct, rec.body)
            if "file" not in parts:
                return _error(422, "file is required")
            name, content = parts["file"]
            fid = str(uuid.uuid4())
            obj = {
                "id": fid,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": name or "file",
                "purpose": parts["purpose"][1].decode() if "purpose" in parts else "fine-tune",
                "sample_type": "instruct",
                "source": "upload",
                "num_lines": content.count(b"\n"),
            }
            self.files[fid], self.contents[fid] = obj, content
            return JSONResponse(obj)

        async def files_list(request: Request) -> Response:
            await record(request)
            return JSONResponse({"data": list(self.files.values()), "object": "list", "total": len(self.files)})

        async def file_get(request: Request) -> Response:
            await record(request)
            fid = request.path_params["fid"]
            if fid not in self.files:
                return _error(404, "file not found")
            if request.method == "DELETE":
                del self.files[fid]
                return JSONResponse({"id": fid, "object": "file", "deleted": True})
            return JSONResponse({**self.files[fid], "deleted": False})

        async def file_content(request: Request) -> Response:
            await record(request)
            fid = request.path_params["fid"]
            if fid not in self.contents:
                return _error(404, "file not found")
            if request.url.path.endswith("/url"):
                return JSONResponse({"url": f"https://files.mistral.example/{fid}?sig=abc"})
            return Response(self.contents[fid], media_type="application/octet-stream")

        def job_obj(body: dict[str, Any]) -> dict[str, Any]:
            return {
                "id": str(uuid.uuid4()),
                "object": "job",
                "auto_start": bool(body.get("auto_start", True)),
                "model": body["model"],
                "status": "QUEUED",
                "job_type": "completion",
                "created_at": int(time.time()),
                "modified_at": int(time.time()),
                "training_files": [t["file_id"] for t in body["training_files"]],
                "validation_files": body.get("validation_files") or [],
                "hyperparameters": body.get("hyperparameters") or {},
                "suffix": body.get("suffix"),
            }

        async def jobs(request: Request) -> Response:
            rec = await record(request)
            if request.method == "GET":
                return JSONResponse({"data": list(self.jobs.values()), "object": "list", "total": len(self.jobs)})
            body = json.loads(rec.body)
            for ref in [t["file_id"] for t in body.get("training_files", [])] + (body.get("validation_files") or []):
                if ref not in self.files:
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
                found["status"] = "CANCELLATION_REQUESTED"
            elif action == "start":
                found["status"] = "STARTED"
            return JSONResponse(found)

        return Starlette(
            routes=[
                Route("/v1/files", files_upload, methods=["POST"]),
                Route("/v1/files", files_list, methods=["GET"]),
                Route("/v1/files/{fid}", file_get, methods=["GET", "DELETE"]),
                Route("/v1/files/{fid}/content", file_content, methods=["GET"]),
                Route("/v1/files/{fid}/url", file_content, methods=["GET"]),
                Route("/v1/fine_tuning/jobs", jobs, methods=["GET", "POST"]),
                Route("/v1/fine_tuning/jobs/{jid}", job, methods=["GET"]),
                Route("/v1/fine_tuning/jobs/{jid}/{action}", job, methods=["POST"]),
            ]
        )


@dataclass
class MEnv(AuditLog):
    upstream: FakeMistral
    gateway: Gateway
    url: str
    state_dir: Path

    def client(self, upstream: str = "mistral", **kw: Any) -> Mistral:
        kw.setdefault("api_key", CLIENT_TOKEN)
        return Mistral(server_url=f"{self.url}/{upstream}", **kw)

    def upstream_paths(self, n: int) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.upstream.received[n:]]


@pytest.fixture(scope="module")
def mis(tmp_path_factory: pytest.TempPathFactory, policy: Any) -> Iterator[MEnv]:
    fake = FakeMistral()
    with ServerThread(fake.app()) as up:
        tmp = tmp_path_factory.mktemp("mistral")
        gw, srv = start_gateway(
            tmp,
            policy,
            {
                "mistral": {"base_url": up.url, "adapter": "mistral", "jurisdiction": "EU"},
                "mistral_xx": {"base_url": up.url, "adapter": "mistral", "jurisdiction": "XX"},
            },
        )
        try:
            yield MEnv(fake, gw, srv.url, tmp)
        finally:
            srv.stop()


def upload(env: MEnv, data: bytes, name: str = "train.jsonl", upstream: str = "mistral") -> Any:
    return env.client(upstream).files.upload(file={"file_name": name, "content": data}, purpose="fine-tune")


def sent_file(env: MEnv, n: int) -> tuple[str | None, bytes, dict[str, tuple[str | None, bytes]]]:
    [rec] = [r for r in env.upstream.received[n:] if r.method == "POST" and r.path == "/v1/files"]
    parts = parse_multipart(rec.headers["content-type"], rec.body)
    return parts["file"][0], parts["file"][1], parts


def refused(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(MistralError) as info:
        call()
    return info.value.status_code, json.loads(info.value.body)


# -- files ----------------------------------------------------------------------------------------------
def test_clean_file_arrives_byte_identical_with_the_client_key(mis: MEnv) -> None:
    tool_call = {"id": "call1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    data = jsonl(
        chat("What is the capital of France?", "Paris."),
        {
            "messages": [
                {"role": "system", "content": "You call tools."},
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": "", "tool_calls": [tool_call]},
                {"role": "tool", "name": "weather", "content": "sunny", "tool_call_id": "call1"},
                {"role": "assistant", "content": "Sunny.", "weight": 1},
            ],
            "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
        },
        {"text": "great product", "labels": {"sentiment": "positive"}},
    )
    n = len(mis.upstream.received)
    f = upload(mis, data)
    filename, content, parts = sent_file(mis, n)
    assert content == data and filename == "train.jsonl"
    assert parts["purpose"][1] == b"fine-tune" and parts["visibility"][1] == b"workspace"
    rec = mis.upstream.received[n]
    assert rec.headers["authorization"] == f"Bearer {CLIENT_TOKEN}"
    admitted = mis.gateway.state.admitted("mistral", f.id, client=mis.audit_entries()[-1]["data"]["client"])
    assert admitted is not None and admitted.purpose == "fine-tune" and admitted.records == 3


def test_personal_data_is_redacted_before_it_leaves(mis: MEnv) -> None:
    n = len(mis.upstream.received)
    f = upload(mis, jsonl(chat(f"write to {EMAIL}"), chat("nothing here")))
    _, content, _ = sent_file(mis, n)
    assert EMAIL.encode() not in content and b"nothing here" in content
    assert mis.upstream.contents[f.id] == content
    entry = [e["data"] for e in mis.audit_entries() if e["data"]["route"] == "files.upload"][-1]
    assert entry["decision"] == "redact" and entry["upstream"] == "mistral"
    assert EMAIL not in mis.audit_text()


def test_blocked_file_never_arrives(mis: MEnv) -> None:
    n = len(mis.upstream.received)
    status, body = refused(lambda: upload(mis, jsonl(chat("hi"), chat(f"my IBAN is {IBAN}"))))
    assert status == 403 and body["object"] == "error" and body["code"] == "policy_block"
    assert "record(s): 2" in body["message"] and IBAN not in body["message"]
    assert mis.upstream.received[n:] == []
    assert IBAN not in mis.audit_text()


def test_files_list_retrieve_delete_pass_through(mis: MEnv) -> None:
    c = mis.client()
    f = upload(mis, jsonl(chat("listing")))
    assert f.id in [x.id for x in c.files.list().data]
    assert c.files.retrieve(file_id=f.id).id == f.id
    assert c.files.download(file_id=f.id).read() == mis.upstream.contents[f.id]
    assert c.files.get_signed_url(file_id=f.id, expiry=2).url.startswith("https://")
    assert mis.upstream.received[-1].query == "expiry=2"
    assert c.files.delete(file_id=f.id).deleted is True
    n = len(mis.upstream.received)
    status, body = refused(lambda: c.files.retrieve(file_id="not-a-file-id"))
    assert (
        status == 400 and body["code"] == "invalid_id" and body["object"] == "error" and mis.upstream.received[n:] == []
    )


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b'{"messages": [{"role": "user", "content": "hi"}]\n', "record 1"),
        (jsonl({"prompt": "a", "completion": "b"}), "not a Mistral fine-tuning record"),
        (jsonl({"messages": [{"role": "robot", "content": "hi"}]}), "messages[0].role"),
        (jsonl({"messages": [{"role": "user", "content": "hi", "extra": 1}]}), "does not know"),
        (jsonl({"messages": [{"role": "user", "content": "hi"}], "metadata": {"x": 1}}), "a chat record has only"),
        (jsonl({"text": "t"}), "needs 'labels'"),
        (
            jsonl(
                {
                    "messages": [
                        {"role": "user", "content": [{"type": "image_url", "image_url": "https://x.example/a.png"}]}
                    ]
                }
            ),
            "points outside",
        ),
    ],
)
def test_malformed_records_refused_before_forwarding(mis: MEnv, data: bytes, where: str) -> None:
    n = len(mis.upstream.received)
    status, body = refused(lambda: upload(mis, data))
    assert status == 400 and where in body["message"], body
    assert mis.upstream.received[n:] == []


def test_unknown_form_field_and_other_purposes_refused(mis: MEnv) -> None:
    n = len(mis.upstream.received)
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    files = {"file": ("t.jsonl", jsonl(chat("x")), "application/jsonl")}
    r = httpx.post(
        f"{mis.url}/mistral/v1/files", data={"purpose": "fine-tune", "note": EMAIL}, files=files, headers=hdr
    )
    assert r.status_code == 400 and r.json()["code"] == "invalid_upload" and EMAIL not in r.text
    r = httpx.post(f"{mis.url}/mistral/v1/files", data={"purpose": "ocr"}, files=files, headers=hdr)
    assert r.status_code == 403 and r.json()["code"] == "purpose_not_allowed"
    r = httpx.post(f"{mis.url}/mistral/v1/files", data={"expiry": "-1"}, files=files, headers=hdr)
    assert r.status_code == 400 and r.json()["param"] == "expiry"
    assert mis.upstream.received[n:] == []


def test_personal_data_to_a_jurisdiction_the_policy_forbids_is_refused(mis: MEnv) -> None:
    n = len(mis.upstream.received)
    status, body = refused(lambda: upload(mis, jsonl(chat("staff EMP-123456 asked")), upstream="mistral_xx"))
    assert status == 403 and body["code"] == "residency" and "res.personal-us-eu" in body["message"]
    assert mis.upstream.received[n:] == []
    assert upload(mis, jsonl(chat("staff EMP-123456 asked"))).id  # the EU upstream may take personal data


# -- fine-tuning jobs -----------------------------------------------------------------------------------
def test_job_lifecycle_on_admitted_files(mis: MEnv) -> None:
    c = mis.client()
    train = upload(mis, jsonl(chat("train")))
    val = upload(mis, jsonl(chat("validate")), name="val.jsonl")
    job = c.fine_tuning.jobs.create(
        model="open-mistral-7b",
        hyperparameters=HYPER,
        training_files=[{"file_id": train.id, "weight": 1}],
        validation_files=[val.id],
        suffix="team-a",
        auto_start=False,
    )
    sent = json.loads([r for r in mis.upstream.received if r.path == "/v1/fine_tuning/jobs"][-1].body)
    assert sent["training_files"] == [{"file_id": train.id, "weight": 1}] and sent["validation_files"] == [val.id]
    assert c.fine_tuning.jobs.start(job_id=job.id).status == "STARTED"
    assert c.fine_tuning.jobs.get(job_id=job.id).id == job.id
    assert job.id in [j.id for j in c.fine_tuning.jobs.list(status="STARTED").data or []]
    assert c.fine_tuning.jobs.cancel(job_id=job.id).status == "CANCELLATION_REQUESTED"
    entry = [e["data"] for e in mis.audit_entries() if e["data"]["route"] == "fine_tuning.jobs.create"][-1]
    assert entry["outcome"] == "forwarded" and set(entry["files"]) == {
        "training_files[0].file_id",
        "validation_files[0]",
    }
    assert entry["residency"]["jurisdiction"] == "EU"


@pytest.mark.parametrize("where", ["training", "validation"])
def test_job_on_an_unscanned_file_is_refused(mis: MEnv, where: str) -> None:
    c = mis.client()
    train = upload(mis, jsonl(chat("ok")))
    stranger = "0b9f5f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
    files = {"training_files": [{"file_id": stranger if where == "training" else train.id}]}
    n = len(mis.upstream.received)
    status, body = refused(
        lambda: c.fine_tuning.jobs.create(
            model="open-mistral-7b", hyperparameters=HYPER, validation_files=[stranger], **files
        )
    )
    assert status == 403 and body["code"] == "unscanned_file" and mis.upstream.received[n:] == []


def test_file_admitted_for_another_upstream_is_not_admitted_here(mis: MEnv) -> None:
    other = upload(mis, jsonl(chat("hello")), upstream="mistral_xx")
    status, body = refused(
        lambda: mis.client().fine_tuning.jobs.create(
            model="open-mistral-7b", hyperparameters=HYPER, training_files=[{"file_id": other.id}]
        )
    )
    assert status == 403 and body["code"] == "unscanned_file"


def _secret_free(mis: MEnv, secret: str, caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    assert all(secret not in t for t in texts)
    assert secret not in caplog.text
    assert all(secret.encode() not in p.read_bytes() for p in mis.state_dir.rglob("*") if p.is_file())
    assert all(secret.encode() not in r.body for r in mis.upstream.received)


def test_repositories_refused_and_the_github_token_is_never_written(
    mis: MEnv, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    train = upload(mis, jsonl(chat("ok")))
    n = len(mis.upstream.received)
    # mistralai 2.4.13 drops `repositories` when it serialises the request (a dict or its own
    # CreateGithubRepositoryRequest alike), so the body is sent as the SDK's model defines it
    repo = {"type": "github", "name": "data", "owner": "acme", "ref": "main", "weight": 1, "token": GITHUB_TOKEN}
    job = {"model": "open-mistral-7b", "hyperparameters": HYPER, "training_files": [{"file_id": train.id, "weight": 1}]}
    r = httpx.post(
        f"{mis.url}/mistral/v1/fine_tuning/jobs",
        json={**job, "repositories": [repo]},
        headers={"authorization": f"Bearer {CLIENT_TOKEN}"},
    )
    body = r.json()
    assert r.status_code == 403 and body["object"] == "error" and body["code"] == "provider_pull_refused"
    assert body["param"] == "repositories" and "GitHub" in body["message"] and mis.upstream.received[n:] == []
    entry = mis.audit_entries()[-1]["data"]
    assert entry["route"] == "fine_tuning.jobs.create" and entry["outcome"] == "refused_before_forwarding"
    _secret_free(mis, GITHUB_TOKEN, caplog, r.text, json.dumps(entry))
    # an empty list carries nothing and is accepted (the SDK's own serialisation of no repositories)
    r = httpx.post(
        f"{mis.url}/mistral/v1/fine_tuning/jobs",
        json={**job, "repositories": []},
        headers={"authorization": f"Bearer {CLIENT_TOKEN}"},
    )
    assert r.status_code == 200 and r.json()["object"] == "job"


def test_wandb_credentials_refused_and_never_written(mis: MEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    train = upload(mis, jsonl(chat("ok")))
    n = len(mis.upstream.received)
    with pytest.raises(MistralError) as info:
        mis.client().fine_tuning.jobs.create(
            model="open-mistral-7b",
            hyperparameters=HYPER,
            training_files=[{"file_id": train.id}],
            integrations=[{"type": "wandb", "project": "ft", "api_key": WANDB_KEY}],
        )
    body = json.loads(info.value.body)
    assert info.value.status_code == 403 and body["code"] == "credential_in_body" and mis.upstream.received[n:] == []
    _secret_free(mis, WANDB_KEY, caplog, info.value.body)


@pytest.mark.parametrize(
    ("payload", "code", "param"),
    [
        (b'{"model": "m", "model": "n"}', "invalid_json", None),
        (b'{"model": "m", "training_files": [', "invalid_json", None),
        (b"[]", "invalid_request", None),
        (b'{"model": "m", "training_files": [{"file_id": "F"}], "notes": "x"}', "invalid_request", None),
        (b'{"model": "m", "hyperparameters": {}}', "invalid_request", "training_files"),
        (b'{"model": "m", "training_files": [{"file_id": "F", "url": "https://x"}]}', "invalid_request", None),
        (b'{"model": "m", "training_files": [{"file_id": "F"}], "job_type": "rlhf"}', "invalid_request", "job_type"),
        (b'{"model": "m", "training_files": [{"file_id": "not-an-id"}]}', "invalid_request", None),
        (b'{"model": "m", "training_files": [{"file_id": "F", "weight": "1"}]}', "invalid_request", None),
    ],
)
def test_bad_job_bodies_get_a_clear_error(mis: MEnv, payload: bytes, code: str, param: str | None) -> None:
    n = len(mis.upstream.received)
    r = httpx.post(
        f"{mis.url}/mistral/v1/fine_tuning/jobs",
        content=payload,
        headers={"authorization": f"Bearer {CLIENT_TOKEN}", "content-type": "application/json"},
    )
    body = r.json()
    assert r.status_code == 400 and body["object"] == "error" and body["code"] == code, body
    if param is not None:
        assert body["param"] == param
    assert mis.upstream.received[n:] == []


def test_job_body_personal_data_redacted_and_ids_checked(mis: MEnv) -> None:
    train = upload(mis, jsonl(chat("ok")))
    mis.client().fine_tuning.jobs.create(
        model="open-mistral-7b", hyperparameters=HYPER, training_files=[{"file_id": train.id}], suffix=EMAIL
    )
    sent = [r for r in mis.upstream.received if r.path == "/v1/fine_tuning/jobs"][-1].body
    assert EMAIL.encode() not in sent and train.id.encode() in sent
    n = len(mis.upstream.received)
    status, body = refused(lambda: mis.client().fine_tuning.jobs.get(job_id="job-1"))
    assert status == 400 and body["code"] == "invalid_id" and mis.upstream.received[n:] == []


def test_unknown_routes_and_query_parameters_are_refused(mis: MEnv) -> None:
    hdr = {"authorization": f"Bearer {CLIENT_TOKEN}"}
    n = len(mis.upstream.received)
    r = httpx.post(f"{mis.url}/mistral/v1/fine_tuning/jobs/0b9f5f0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/pause", headers=hdr)
    # an unknown route on a known upstream is refused in that provider's error shape
    assert r.status_code == 403 and r.json()["object"] == "error" and r.json()["code"] == "route_not_allowed"
    r = httpx.get(f"{mis.url}/mistral/v1/files", params={"search": EMAIL}, headers=hdr)
    assert r.status_code == 400 and EMAIL not in r.text
    r = httpx.get(f"{mis.url}/mistral/v1/fine_tuning/jobs", params={"wandb_key": "x"}, headers=hdr)
    assert r.status_code == 400 and r.json()["code"] == "invalid_query"
    assert mis.upstream.received[n:] == []


def test_gateway_held_key_replaces_the_client_key(tmp_path: Path, policy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TEST_MISTRAL_KEY", PROVIDER_KEY)
    fake = FakeMistral()
    with ServerThread(fake.app()) as up:
        gw, srv = start_gateway(
            tmp_path,
            policy,
            {
                "mistral": {
                    "base_url": up.url,
                    "adapter": "mistral",
                    "jurisdiction": "EU",
                    "auth": {"mode": "replace", "api_key_env": "BASTION_TEST_MISTRAL_KEY"},
                }
            },
        )
        try:
            env = MEnv(fake, gw, srv.url, tmp_path)
            upload(env, jsonl(chat("held")))
            assert fake.received[-1].headers["authorization"] == f"Bearer {PROVIDER_KEY}"
            assert PROVIDER_KEY not in env.audit_text() and CLIENT_TOKEN not in env.audit_text()
        finally:
            srv.stop()


def test_spec_knows_the_eu_host_and_record_shapes() -> None:
    spec = get_provider("mistral")
    assert spec.jurisdiction_for("https://api.mistral.ai") == "EU"
    assert {"files.upload", "fine_tuning.jobs.create", "fine_tuning.jobs.start"} <= spec.names
    assert record_problem({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}) is None
    assert record_problem({"messages": [{"role": "user", "content": "x", "weight": 1}]}) is not None
    assert record_problem({"text": "t", "labels": ["a"]}) is not None
