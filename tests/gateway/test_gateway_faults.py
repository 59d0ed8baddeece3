"""Upstream faults, retries and disconnects, in-process: the official async SDK drives the gateway app over
``httpx.ASGITransport`` and the upstream is an injected ``httpx.MockTransport`` that fails on purpose
(500, 429, resets, hangs, bad JSON). Nothing here sleeps: hangs are events that never fire."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gw_support import CLIENT_TOKEN, EMAIL, chat, jsonl

from bastion.gateway.app import Gateway, create_gateway
from bastion.gateway.config import config_from_mapping

pytestmark = pytest.mark.anyio
GOOD = jsonl(chat("hello"), chat("world"))
Handler = Callable[[httpx.Request], Any]


class Upstream:
    """A scripted upstream: per (method, path) a list of answers used in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.calls: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.script: dict[tuple[str, str], list[Handler]] = {}

    def on(self, method: str, path: str, *answers: Handler) -> None:
        self.script[(method, path)] = list(answers)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.calls.append(request)
        self.bodies.append(body)
        key = (request.method, request.url.path)
        if key not in self.script:
            for m, p in self.script:
                if m == request.method and p.endswith("*") and request.url.path.startswith(p[:-1]):
                    key = (m, p)
                    break
        answers = self.script.get(key)
        if not answers:
            return httpx.Response(404, json={"error": {"message": "no such route", "code": None}})
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        out = answer(request)
        if asyncio.iscoroutine(out):
            out = await out
        assert isinstance(out, httpx.Response)
        return out

    def count(self, method: str, path: str) -> int:
        return sum(1 for r in self.calls if r.method == method and r.url.path == path)


def ok_file(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "file-abc123",
            "object": "file",
            "bytes": 1,
            "created_at": 0,
            "filename": "t.jsonl",
            "purpose": "fine-tune",
            "status": "processed",
        },
    )


def raise_(exc: Exception) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture()
def up() -> Upstream:
    return Upstream()


@pytest.fixture()
async def gw(tmp_path: Path, policy: Any, up: Upstream) -> AsyncIterator[Gateway]:
    cfg = config_from_mapping(
        {
            "upstreams": {"openai": {"base_url": "https://api.openai.com", "auth": {"mode": "passthrough"}}},
            "gateway": {"state_dir": str(tmp_path)},
        }
    )
    gateway = create_gateway(cfg, policy, transport=httpx.MockTransport(up))
    try:
        yield gateway
    finally:
        await gateway.aclose()


def sdk(gw: Gateway, **kw: Any) -> openai.AsyncOpenAI:
    kw.setdefault("max_retries", 0)
    return openai.AsyncOpenAI(
        base_url="http://gateway/openai/v1",
        api_key=CLIENT_TOKEN,
        http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app)),
        **kw,
    )


def raw(gw: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gw.app),
        base_url="http://gateway",
        headers={"Authorization": f"Bearer {CLIENT_TOKEN}"},
    )


def audit(gw: Gateway) -> list[dict[str, Any]]:
    gw.audit.drain()
    return [json.loads(x)["data"] for x in gw.settings.audit_path.read_text().splitlines()]


async def test_jurisdiction_from_the_host(gw: Gateway) -> None:
    assert gw.upstreams["openai"].jurisdiction == "US"


async def test_upstream_500_is_masked_and_the_file_not_admitted(gw: Gateway, up: Upstream) -> None:
    up.on(
        "POST",
        "/v1/files",
        lambda r: httpx.Response(
            500, json={"error": {"message": f"cannot store the file of {EMAIL}", "code": "server_error"}}
        ),
    )
    with pytest.raises(openai.InternalServerError) as info:
        await sdk(gw).files.create(file=("t.jsonl", io.BytesIO(GOOD)), purpose="fine-tune")
    assert EMAIL not in str(info.value.body) and "[EMAIL]" in str(info.value.body)
    assert gw.state.admitted("openai", "file-abc123") is None
    last = audit(gw)[-1]
    assert last["outcome"] == "forwarded" and last["status"] == 500 and EMAIL not in json.dumps(last)


async def test_upstream_429_passes_with_retry_after(gw: Gateway, up: Upstream) -> None:
    up.on(
        "GET",
        "/v1/models",
        lambda r: httpx.Response(
            429, json={"error": {"message": "slow down", "code": "rate_limit_exceeded"}}, headers={"retry-after": "7"}
        ),
    )
    async with raw(gw) as c:
        r = await c.get("/openai/v1/models")
    assert r.status_code == 429 and r.headers["retry-after"] == "7"
    assert audit(gw)[-1]["upstream_error"] == "rate_limit_exceeded"


async def test_reset_after_sending_is_forwarded_no_answer_and_never_forwarded_again(gw: Gateway, up: Upstream) -> None:
    up.on("POST", "/v1/files", raise_(httpx.RemoteProtocolError("peer closed connection")))
    async with raw(gw) as c:
        first = await c.post(
            "/openai/v1/files",
            files={"file": ("t.jsonl", GOOD)},
            data={"purpose": "fine-tune"},
            headers={"Idempotency-Key": "k-1"},
        )
        again = await c.post(
            "/openai/v1/files",
            files={"file": ("t.jsonl", GOOD)},
            data={"purpose": "fine-tune"},
            headers={"Idempotency-Key": "k-1"},
        )
    assert first.status_code == 502 and "may have reached" in first.json()["error"]["message"]
    assert again.status_code == 502 and "not forwarded again" in again.json()["error"]["message"]
    assert up.count("POST", "/v1/files") == 1
    entries = audit(gw)
    assert [e["outcome"] for e in entries if e.get("reason") == "upstream_unreachable"] == ["forwarded_no_answer"]
    assert entries[-1]["event"] == "idempotent_replay"


async def test_connect_error_sends_nothing_so_a_retry_forwards(gw: Gateway, up: Upstream) -> None:
    up.on("POST", "/v1/files", raise_(httpx.ConnectError("refused")), ok_file)
    async with raw(gw) as c:
        first = await c.post(
            "/openai/v1/files",
            files={"file": ("t.jsonl", GOOD)},
            data={"purpose": "fine-tune"},
            headers={"Idempotency-Key": "k-2"},
        )
        again = await c.post(
            "/openai/v1/files",
            files={"file": ("t.jsonl", GOOD)},
            data={"purpose": "fine-tune"},
            headers={"Idempotency-Key": "k-2"},
        )
    assert first.status_code == 502 and "nothing was forwarded" in first.json()["error"]["message"]
    assert again.status_code == 200 and again.json()["id"] == "file-abc123"
    assert [e["outcome"] for e in audit(gw) if e.get("reason") == "upstream_unreachable"] == [
        "refused_before_forwarding"
    ]


async def test_upstream_hang_is_a_504_forwarded_no_answer(gw: Gateway, up: Upstream) -> None:
    up.on("POST", "/v1/fine_tuning/jobs/*", raise_(httpx.ReadTimeout("no answer")))
    async with raw(gw) as c:
        r = await c.post("/openai/v1/fine_tuning/jobs/ftjob-abc/cancel")
    assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"
    assert audit(gw)[-1]["outcome"] == "forwarded_no_answer"


async def test_bad_json_answer_is_passed_on_and_nothing_admitted(gw: Gateway, up: Upstream) -> None:
    up.on("POST", "/v1/files", lambda r: httpx.Response(200, content=b"<html>oops</html>"))
    async with raw(gw) as c:
        r = await c.post("/openai/v1/files", files={"file": ("t.jsonl", GOOD)}, data={"purpose": "fine-tune"})
    assert r.status_code == 200 and r.content == b"<html>oops</html>"
    last = audit(gw)[-1]
    assert last["file_id"] is None and last["outcome"] == "forwarded"


async def _upload_with_key(c: httpx.AsyncClient, key: str, data: bytes = GOOD) -> httpx.Response:
    return await c.post(
        "/openai/v1/files",
        files={"file": ("t.jsonl", data)},
        data={"purpose": "fine-tune"},
        headers={"Idempotency-Key": key},
    )


async def test_idempotency_key_forwards_once_and_refuses_reuse(gw: Gateway, up: Upstream) -> None:
    up.on("POST", "/v1/files", ok_file)
    async with raw(gw) as c:
        answers = [await _upload_with_key(c, "upload-1") for _ in range(3)]
        other = await _upload_with_key(c, "upload-1", jsonl(chat("x")))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.content for a in answers}) == 1
    assert up.count("POST", "/v1/files") == 1
    assert other.status_code == 422 and other.json()["error"]["code"] == "idempotency_key_reused"
    sent = up.calls[0].headers["idempotency-key"]
    assert sent.startswith("bastion-") and "upload-1" not in sent


async def test_an_idempotency_key_is_not_scanned_since_only_its_digest_leaves(gw: Gateway, up: Upstream) -> None:
    """A client whose keys are sha256 hex was refused 2.3 % of the time (a digit run read as a card), though
    the key never leaves: the upstream gets the gateway's own key derived from it, the audit nothing of it."""
    key = "6585669831325548505" + "abcdef" * 7 + "abc"  # 64 hex characters; the digits pass a card check
    assert len(key) == 64
    up.on("POST", "/v1/files", ok_file)
    async with raw(gw) as c:
        answers = [await _upload_with_key(c, key) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200] and up.count("POST", "/v1/files") == 1
    sent = up.calls[-1].headers["idempotency-key"]
    assert sent.startswith("bastion-") and "6585669831325548505" not in sent
    assert "6585669831325548505" not in json.dumps(audit(gw))


async def test_sdk_retry_of_an_answered_request_is_replayed(gw: Gateway, up: Upstream) -> None:
    up.on(
        "POST",
        "/v1/fine_tuning/jobs",
        lambda r: httpx.Response(200, json={"id": "ftjob-1", "object": "fine_tuning.job"}),
    )
    up.on("POST", "/v1/files", ok_file)
    f = await sdk(gw).files.create(file=("t.jsonl", io.BytesIO(GOOD)), purpose="fine-tune")
    up.on("POST", "/v1/files", ok_file)
    body = {"model": "gpt-4o-mini", "training_file": f.id}
    async with raw(gw) as c:
        first = await c.post("/openai/v1/fine_tuning/jobs", json=body)
        # what the SDK sends when its first attempt timed out on the client side: the same request, retry count 1
        retry = await c.post("/openai/v1/fine_tuning/jobs", json=body, headers={"x-stainless-retry-count": "1"})
    assert first.status_code == retry.status_code == 200 and first.content == retry.content
    assert up.count("POST", "/v1/fine_tuning/jobs") == 1, [(e.get("event"), e.get("idempotency")) for e in audit(gw)]


async def test_sdk_retries_after_a_500_forward_again(gw: Gateway, up: Upstream) -> None:
    up.on("POST", "/v1/files", lambda r: httpx.Response(500, json={"error": {"message": "x", "code": None}}), ok_file)
    f = await sdk(gw, max_retries=2).files.create(file=("t.jsonl", io.BytesIO(GOOD)), purpose="fine-tune")
    assert f.id == "file-abc123" and up.count("POST", "/v1/files") == 2
    assert up.calls[1].headers.get("x-stainless-retry-count") is None  # not forwarded: not on the allowlist


def _upload_script(up: Upstream, complete: list[Handler]) -> None:
    up.on("POST", "/v1/uploads", lambda r: httpx.Response(200, json={"id": "upload_remote1", "object": "upload"}))
    up.on("POST", "/v1/uploads/upload_remote1/parts", lambda r: httpx.Response(200, json={"id": "part_r1"}))
    up.on("POST", "/v1/uploads/upload_remote1/cancel", lambda r: httpx.Response(200, json={"id": "upload_remote1"}))
    up.on("POST", "/v1/uploads/upload_remote1/complete", *complete)


def _completed(r: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "id": "upload_remote1",
            "object": "upload",
            "status": "completed",
            "file": {"id": "file-done1", "object": "file"},
        },
    )


async def test_failed_upstream_complete_cancels_the_remote_upload(gw: Gateway, up: Upstream) -> None:
    _upload_script(up, [lambda r: httpx.Response(500, json={"error": {"message": "x", "code": None}}), _completed])
    c = sdk(gw)
    u = await c.uploads.create(bytes=len(GOOD), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    p = await c.uploads.parts.create(upload_id=u.id, data=GOOD)
    with pytest.raises(openai.InternalServerError):
        await c.uploads.complete(upload_id=u.id, part_ids=[p.id])
    assert up.count("POST", "/v1/uploads/upload_remote1/cancel") == 1
    assert [e for e in audit(gw) if e.get("stage") == "complete"][-1]["remote_upload_cancelled"] is True
    done = await c.uploads.complete(upload_id=u.id, part_ids=[p.id])  # the held upload is still open
    again = await c.uploads.complete(upload_id=u.id, part_ids=[p.id])  # idempotent: replayed
    assert done.file is not None and again.file is not None and done.file.id == again.file.id == "file-done1"
    assert up.count("POST", "/v1/uploads") == 2 and up.count("POST", "/v1/uploads/upload_remote1/complete") == 2
    assert gw.state.admitted("openai", "file-done1", client=audit(gw)[-1]["client"]) is not None


async def test_concurrent_completes_create_one_upstream_upload(gw: Gateway, up: Upstream) -> None:
    _upload_script(up, [_completed])
    c = sdk(gw)
    u = await c.uploads.create(bytes=len(GOOD), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    p = await c.uploads.parts.create(upload_id=u.id, data=GOOD)
    results = await asyncio.gather(*(c.uploads.complete(upload_id=u.id, part_ids=[p.id]) for _ in range(4)))
    assert {r.file.id for r in results if r.file is not None} == {"file-done1"}
    assert up.count("POST", "/v1/uploads") == 1


async def test_audit_unavailable_fails_closed_on_pass_through(
    gw: Gateway, up: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.gateway.audit import AuditUnavailable

    up.on("GET", "/v1/models", lambda r: httpx.Response(200, json={"data": []}))

    async def down() -> None:
        raise AuditUnavailable("the audit log cannot be written")

    monkeypatch.setattr(gw.audit, "ensure_available", down)
    async with raw(gw) as c:
        r = await c.get("/openai/v1/models")
    assert r.status_code == 503 and r.json()["error"]["code"] == "audit_unavailable"
    assert up.calls == []


async def test_client_disconnect_stops_an_unfinished_forward(gw: Gateway, up: Upstream) -> None:
    never = asyncio.Event()
    reached = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        reached.set()
        await never.wait()
        raise AssertionError("unreachable")

    up.on("POST", "/v1/fine_tuning/jobs", hang)
    up.on("POST", "/v1/files", ok_file)
    f = await sdk(gw).files.create(file=("t.jsonl", io.BytesIO(GOOD)), purpose="fine-tune")
    body = json.dumps({"model": "gpt-4o-mini", "training_file": f.id}).encode()
    disconnect = asyncio.Event()
    sent: list[dict[str, Any]] = []
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/openai/v1/fine_tuning/jobs",
        "raw_path": b"/openai/v1/fine_tuning/jobs",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {CLIENT_TOKEN}".encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("gateway", 80),
    }
    task = asyncio.create_task(gw.app(scope, receive, send))  # type: ignore[arg-type]
    await reached.wait()  # the upstream has the request and is not answering
    disconnect.set()
    await task
    last = audit(gw)[-1]
    assert last["reason"] == "client_disconnected" and last["outcome"] == "forwarded_no_answer"
