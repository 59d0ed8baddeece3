"""A local stand-in for the OpenAI API that speaks its wire protocol and records the exact bytes it got.

Files (multipart ``file`` + ``purpose``), Uploads (create / parts / complete with the real checks:
parts must add up to ``bytes``, optional ``md5``), fine-tuning jobs (the training file must exist),
files/models listing. Every request is kept as (method, path, headers, raw body) in ``received``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

_BASE62 = string.ascii_letters + string.digits


def openai_id(prefix: str) -> str:
    """An id as OpenAI issues them: a prefix and 24 base-62 characters (hex ids, digit-heavy, are not its
    shape: a run of their digits reads as a card or id number now and then, which made tests flaky)."""
    return prefix + "".join(secrets.choice(_BASE62) for _ in range(24))


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


async def record_request(request: Request, into: list[Received], lock: threading.Lock) -> Received:
    """What a stand-in got (method, path, query, lower-cased headers, raw body), appended to ``into``."""
    rec = Received(
        request.method,
        request.url.path,
        request.url.query,
        {k.lower(): v for k, v in request.headers.items()},
        await request.body(),
    )
    with lock:
        into.append(rec)
    return rec


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """name -> (filename, bytes); a strict re-parse of what the gateway sent."""
    _, params = parse_options_header(content_type)
    parts: dict[str, tuple[str | None, bytes]] = {}
    state: dict[str, Any] = {}

    def on_part_begin() -> None:
        state.update(headers={}, data=bytearray(), hf=bytearray(), hv=bytearray())

    def on_header_field(d: bytes, s: int, e: int) -> None:
        state["hf"] += d[s:e]

    def on_header_value(d: bytes, s: int, e: int) -> None:
        state["hv"] += d[s:e]

    def on_header_end() -> None:
        state["headers"][bytes(state["hf"]).decode().lower()] = bytes(state["hv"]).decode()
        state["hf"], state["hv"] = bytearray(), bytearray()

    def on_part_data(d: bytes, s: int, e: int) -> None:
        state["data"] += d[s:e]

    def on_part_end() -> None:
        _, p = parse_options_header(state["headers"]["content-disposition"])
        name = p[b"name"].decode()
        assert name not in parts, f"duplicate part {name}"
        fn = p.get(b"filename")
        parts[name] = (fn.decode() if fn is not None else None, bytes(state["data"]))

    parser = MultipartParser(
        params[b"boundary"],
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    parser.write(body)
    return parts


def _error(status: int, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}},
        status_code=status,
    )


@dataclass
class FakeOpenAI:
    received: list[Received] = field(default_factory=list)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)
    uploads: dict[str, dict[str, Any]] = field(default_factory=dict)
    parts: dict[str, bytes] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    record_bodies: bool = True
    #: ids the next created files get, in order (then random ones)
    next_file_ids: list[str] = field(default_factory=list)
    #: job ids to hand out next (Azure's shape: ftjob- and 32 hex digits), before drawn ones
    next_job_ids: list[str] = field(default_factory=list)

    def calls(self, method: str, path_prefix: str) -> list[Received]:
        return [r for r in self.received if r.method == method and r.path.startswith(path_prefix)]

    def app(self) -> Any:
        async def record(request: Request) -> Received:
            body = await request.body()
            rec = Received(
                request.method,
                request.scope.get("orig_path", request.url.path),
                request.url.query,
                {k.lower(): v for k, v in request.headers.items()},
                body if self.record_bodies else b"",
            )
            with self.lock:
                self.received.append(rec)
            return rec

        def _file_obj(content: bytes, filename: str, purpose: str) -> dict[str, Any]:
            fid = self.next_file_ids.pop(0) if self.next_file_ids else openai_id("file-")
            obj = {
                "id": fid,
                "object": "file",
                "bytes": len(content),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
                "expires_at": None,
                "status_details": None,
            }
            self.files[fid] = obj
            self.contents[fid] = content
            return obj

        async def files_create(request: Request) -> Response:
            rec = await record(request)
            ct = rec.headers.get("content-type", "")
            if not ct.startswith("multipart/form-data"):
                return _error(400, "expected multipart/form-data")
            if int(rec.headers.get("content-length", "-1")) != len(rec.body):
                return _error(400, "Content-Length does not match the body")
            parts = parse_multipart(ct, rec.body)
            if "file" not in parts or "purpose" not in parts:
                return _error(400, "file and purpose are required")
            filename, content = parts["file"]
            return JSONResponse(_file_obj(content, filename or "file", parts["purpose"][1].decode()))

        async def files_list(request: Request) -> Response:
            await record(request)
            return JSONResponse({"object": "list", "data": list(self.files.values()), "has_more": False})

        async def files_retrieve(request: Request) -> Response:
            await record(request)
            obj = self.files.get(request.path_params["fid"])
            return JSONResponse(obj) if obj else _error(404, "No such File object")

        async def files_content(request: Request) -> Response:
            await record(request)
            content = self.contents.get(request.path_params["fid"])
            if content is None:
                return _error(404, "No such File object")

            async def chunks() -> Any:
                for i in range(0, len(content), 65536):
                    yield content[i : i + 65536]

            from starlette.responses import StreamingResponse

            return StreamingResponse(chunks(), media_type="application/octet-stream")  # chunked, no length

        async def models_list(request: Request) -> Response:
            await record(request)
            return JSONResponse(
                {
                    "object": "list",
                    "data": [{"id": "gpt-4o-mini", "object": "model", "created": 0, "owned_by": "openai"}],
                }
            )

        async def echo(request: Request) -> Response:
            rec = await record(request)
            return JSONResponse({"ok": True, "n": len(rec.body)}, headers={"x-upstream": "yes"})

        async def uploads_create(request: Request) -> Response:
            rec = await record(request)
            body = json.loads(rec.body)
            uid = openai_id("upload_")
            up = {
                "id": uid,
                "object": "upload",
                "bytes": body["bytes"],
                "created_at": int(time.time()),
                "expires_at": int(time.time()) + 3600,
                "filename": body["filename"],
                "purpose": body["purpose"],
                "status": "pending",
                "file": None,
                "_parts": [],
                "_mime": body["mime_type"],
            }
            self.uploads[uid] = up
            return JSONResponse({k: v for k, v in up.items() if not k.startswith("_")})

        async def uploads_parts(request: Request) -> Response:
            rec = await record(request)
            up = self.uploads.get(request.path_params["uid"])
            if up is None:
                return _error(404, "No such upload")
            if int(rec.headers.get("content-length", "-1")) != len(rec.body):
                return _error(400, "Content-Length does not match the body")
            parts = parse_multipart(rec.headers["content-type"], rec.body)
            pid = openai_id("part_")
            self.parts[pid] = parts["data"][1]
            up["_parts"].append(pid)
            return JSONResponse(
                {"id": pid, "object": "upload.part", "created_at": int(time.time()), "upload_id": up["id"]}
            )

        async def uploads_complete(request: Request) -> Response:
            rec = await record(request)
            up = self.uploads.get(request.path_params["uid"])
            if up is None:
                return _error(404, "No such upload")
            body = json.loads(rec.body)
            data = b"".join(self.parts[p] for p in body["part_ids"])
            if len(data) != up["bytes"]:
                return _error(400, f"parts total {len(data)} bytes, expected {up['bytes']}", "part_ids")
            if body.get("md5") and hashlib.md5(data).hexdigest() != body["md5"]:
                return _error(400, "md5 mismatch", "md5")
            up["status"] = "completed"
            up["file"] = _file_obj(data, up["filename"], up["purpose"])
            return JSONResponse({k: v for k, v in up.items() if not k.startswith("_")})

        async def uploads_cancel(request: Request) -> Response:
            await record(request)
            up = self.uploads.get(request.path_params["uid"])
            if up is None:
                return _error(404, "No such upload")
            up["status"] = "cancelled"
            return JSONResponse({k: v for k, v in up.items() if not k.startswith("_")})

        async def jobs_create(request: Request) -> Response:
            rec = await record(request)
            body = json.loads(rec.body)
            if body.get("training_file") not in self.files:
                return _error(400, "invalid training_file", "training_file")
            jid = self.next_job_ids.pop(0) if self.next_job_ids else openai_id("ftjob-")
            job = {
                "id": jid,
                "object": "fine_tuning.job",
                "created_at": int(time.time()),
                "error": None,
                "fine_tuned_model": None,
                "finished_at": None,
                "hyperparameters": {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"},
                "model": body["model"],
                "organization_id": "org-test",
                "result_files": [],
                "seed": 42,
                "status": "queued",
                "trained_tokens": None,
                "training_file": body["training_file"],
                "validation_file": body.get("validation_file"),
                "method": body.get("method"),
            }
            self.jobs[jid] = job
            return JSONResponse(job)

        async def jobs_retrieve(request: Request) -> Response:
            await record(request)
            job = self.jobs.get(request.path_params["jid"])
            return JSONResponse(job) if job is not None else _error(404, "no such job", "job_id")

        async def fallback(request: Request) -> Response:
            """Any other route: recorded; batches/evals answered in their shape, the rest echoed."""
            rec = await record(request)
            path = request.url.path
            if request.method == "POST" and path == "/v1/batches":
                body = json.loads(rec.body)
                if body.get("input_file_id") not in self.files:
                    return _error(400, "invalid input_file_id", "input_file_id")
                return JSONResponse({"id": openai_id("batch_"), "object": "batch", "status": "validating"})
            if request.method == "POST" and path == "/v1/evals":
                return JSONResponse({"id": openai_id("eval_"), "object": "eval"})
            if request.method == "POST" and path.startswith("/v1/evals/") and path.endswith("/runs"):
                return JSONResponse({"id": openai_id("evalrun_"), "object": "eval.run"})
            if request.method == "GET" and path == "/v1/fine_tuning/jobs":
                return JSONResponse({"object": "list", "data": [], "has_more": False})
            return JSONResponse({"ok": True, "n": len(rec.body)}, headers={"x-upstream": "yes"})

        app = Starlette(
            routes=[
                Route("/v1/files", files_create, methods=["POST"]),
                Route("/v1/files", files_list, methods=["GET"]),
                Route("/v1/files/{fid}", files_retrieve, methods=["GET"]),
                Route("/v1/files/{fid}/content", files_content, methods=["GET"]),
                Route("/v1/models", models_list, methods=["GET"]),
                Route("/v1/chat/completions", echo, methods=["POST"]),
                Route("/v1/uploads", uploads_create, methods=["POST"]),
                Route("/v1/uploads/{uid}/parts", uploads_parts, methods=["POST"]),
                Route("/v1/uploads/{uid}/complete", uploads_complete, methods=["POST"]),
                Route("/v1/uploads/{uid}/cancel", uploads_cancel, methods=["POST"]),
                Route("/v1/fine_tuning/jobs", jobs_create, methods=["POST"]),
                Route("/v1/fine_tuning/jobs/{jid}", jobs_retrieve, methods=["GET"]),
                Route("/{path:path}", fallback, methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
            ]
        )
        return _AzurePaths(app)


class _AzurePaths:
    """Serves the same API under Azure OpenAI's prefixes too: ``/openai/v1/x`` and ``/openai/x`` -> ``/v1/x``
    (the recorded path stays the one the client sent)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            for prefix in ("/openai/v1/", "/openai/"):
                if path.startswith(prefix):
                    new = "/v1/" + path[len(prefix) :]
                    scope = {**scope, "orig_path": path, "path": new, "raw_path": new.encode()}
                    break
        await self.app(scope, receive, send)
