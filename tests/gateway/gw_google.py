"""A 127.0.0.1 stand-in for Google: Cloud Storage's JSON API (resumable sessions included), Vertex AI
``tuningJobs`` and the OAuth token endpoint a service-account key names. It stores the exact bytes it
receives, checks every ``Content-Range`` and the ``x-goog-hash`` crc32c of a finished upload, and
records every request (method, path, query, headers, body)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
from gw_upstream import Received, record_request
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

MINTED_TOKEN = "ya29.minted-by-the-gateway-from-its-service-account"


def gcs_error(status: int, message: str, reason: str = "invalid") -> JSONResponse:
    return JSONResponse(
        {"error": {"code": status, "message": message, "errors": [{"message": message, "domain": "global",
                                                                    "reason": reason}]}},
        status_code=status,
    )  # fmt: skip


@dataclass
class Session:
    bucket: str
    meta: dict[str, Any]
    data: bytearray = field(default_factory=bytearray)


#: 19-digit numbers that pack:eu-gdpr reads as payment cards on their own (found by drawing random ones)
JOB_NUMBERS_THAT_READ_AS_CARDS = ("6585669831325548505", "6069452754643211893")
#: one more, never handed out: a path carrying it was not issued by the upstream
UNISSUED_CARD_LIKE_JOB_NUMBER = "3573998652306158051"
#: another, of a job made outside the gateway (the console): the gateway learns it from a list
CARD_LIKE_JOB_NUMBER_MADE_ELSEWHERE = "3892923245492692829"
#: a 12-digit project number that reads as a phone number on its own
PROJECT_NUMBER_THAT_READS_AS_A_PHONE = "390384745178"


@dataclass
class FakeGoogle:
    """Objects by (bucket, name); sessions by upload id; tuning jobs by name."""

    received: list[Received] = field(default_factory=list)
    objects: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    contents: dict[tuple[str, str], bytes] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: project id -> project number: Vertex names a job by its project's number, as the real service does
    project_numbers: dict[str, str] = field(default_factory=dict)
    #: when set, storage and Vertex requests must carry exactly this bearer token
    token: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    _gen: Any = field(default_factory=lambda: itertools.count(1_700_000_000_000_001))
    #: job numbers as Vertex gives them (19 digits); the first ones pass a card check, as 3 % of real ones do
    job_numbers: Any = field(
        default_factory=lambda: itertools.chain(
            JOB_NUMBERS_THAT_READ_AS_CARDS, itertools.count(4_000_000_000_000_000_001, 7_919)
        )
    )

    def calls(self, method: str, path_prefix: str) -> list[Received]:
        return [r for r in self.received if r.method == method and r.path.startswith(path_prefix)]

    def put(self, bucket: str, name: str, content: bytes, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Store an object (as a write that bypassed the gateway would)."""
        crc = base64.b64encode(google_crc32c.Checksum(content).digest()).decode()
        obj = {
            "kind": "storage#object",
            "id": f"{bucket}/{name}",
            "bucket": bucket,
            "name": name,
            "generation": str(next(self._gen)),
            "metageneration": "1",
            "contentType": (meta or {}).get("contentType", "application/octet-stream"),
            "size": str(len(content)),
            "md5Hash": base64.b64encode(hashlib.md5(content).digest()).decode(),
            "crc32c": crc,
            **{k: v for k, v in (meta or {}).items() if k not in ("name", "contentType")},
        }
        self.objects[(bucket, name)] = obj
        self.contents[(bucket, name)] = content
        return obj

    def app(self) -> Starlette:
        async def record(request: Request) -> Received:
            return await record_request(request, self.received, self.lock)

        def authorised(rec: Received) -> bool:
            return self.token is None or rec.headers.get("authorization") == f"Bearer {self.token}"

        async def upload(request: Request) -> Response:
            rec = await record(request)
            if not authorised(rec):
                return gcs_error(401, "Invalid Credentials", "authError")
            bucket = request.path_params["bucket"]
            q = request.query_params
            if request.method == "POST":
                if q.get("uploadType") != "resumable":
                    return gcs_error(400, "this stand-in only takes resumable uploads (the gateway's own)")
                meta = json.loads(rec.body or b"{}")
                meta.setdefault("name", q.get("name"))
                sid = uuid.uuid4().hex
                self.sessions[sid] = Session(bucket, meta)
                loc = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?uploadType=resumable&upload_id={sid}"
                return Response(b"", headers={"location": loc})
            sid = q.get("upload_id", "")
            if sid not in self.sessions:
                return gcs_error(404, "No such upload session")
            session = self.sessions[sid]
            if request.method == "DELETE":
                del self.sessions[sid]
                return Response(b"", status_code=499)
            crange = rec.headers.get("content-range", "")
            span, _, total = crange.removeprefix("bytes ").partition("/")
            first, _, last = span.partition("-")
            if int(first) != len(session.data) or int(last) - int(first) + 1 != len(rec.body):
                return gcs_error(400, f"bad Content-Range {crange} for {len(session.data)} held bytes")
            if int(rec.headers.get("content-length", "-1")) != len(rec.body):
                return gcs_error(400, "Content-Length does not match the body")
            session.data += rec.body
            if total == "*":
                if len(session.data) % (256 * 1024):
                    return gcs_error(400, "a non-final chunk must be a multiple of 256 KiB")
                return Response(b"", status_code=308, headers={"range": f"bytes=0-{len(session.data) - 1}"})
            if int(total) != len(session.data):
                return gcs_error(400, "the final chunk does not end at the total size")
            content = bytes(session.data)
            obj = self.put(bucket, session.meta["name"], content, session.meta)
            claimed = rec.headers.get("x-goog-hash", "")
            if claimed and claimed != f"crc32c={obj['crc32c']}":
                del self.objects[(bucket, session.meta["name"])]
                return gcs_error(400, "Provided CRC32C does not match the object's")
            del self.sessions[sid]
            return JSONResponse(obj)

        async def obj(request: Request) -> Response:
            rec = await record(request)
            if not authorised(rec):
                return gcs_error(401, "Invalid Credentials", "authError")
            key = (request.path_params["bucket"], request.path_params["name"])
            if key not in self.objects:
                return gcs_error(404, "No such object", "notFound")
            if request.method == "DELETE":
                del self.objects[key]
                return Response(b"", status_code=204)
            return JSONResponse(self.objects[key])

        async def token(request: Request) -> Response:
            rec = await record(request)
            form = dict(x.split("=", 1) for x in rec.body.decode().split("&"))
            if form.get("grant_type") != "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer":
                return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
            return JSONResponse({"access_token": MINTED_TOKEN, "expires_in": 3600, "token_type": "Bearer"})

        def job_obj(name: str, body: dict[str, Any]) -> dict[str, Any]:
            return {
                **body,
                "name": name,
                "state": "JOB_STATE_PENDING",
                "createTime": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            }

        async def jobs(request: Request) -> Response:
            rec = await record(request)
            if not authorised(rec):
                return JSONResponse({"error": {"code": 401, "message": "unauthenticated", "status": "UNAUTHENTICATED"}},
                                    status_code=401)  # fmt: skip
            p, loc = request.path_params["project"], request.path_params["location"]
            if request.method == "GET":
                return JSONResponse({"tuningJobs": list(self.jobs.values())})
            name = f"projects/{self.project_numbers.get(p, p)}/locations/{loc}/tuningJobs/{next(self.job_numbers)}"
            self.jobs[name] = job_obj(name, json.loads(rec.body))
            return JSONResponse(self.jobs[name])

        async def job(request: Request) -> Response:
            await record(request)
            p, loc, jid = (request.path_params[k] for k in ("project", "location", "job"))
            verb = ""
            if ":" in jid:
                jid, verb = jid.split(":", 1)
            name = f"projects/{self.project_numbers.get(p, p)}/locations/{loc}/tuningJobs/{jid}"
            if name not in self.jobs:
                return JSONResponse({"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}, 404)
            if verb == "cancel":
                self.jobs[name]["state"] = "JOB_STATE_CANCELLING"
                return JSONResponse({})
            return JSONResponse(self.jobs[name])

        return Starlette(
            routes=[
                Route("/upload/storage/v1/b/{bucket}/o", upload, methods=["POST", "PUT", "DELETE"]),
                Route("/storage/v1/b/{bucket}/o/{name:path}", obj, methods=["GET", "DELETE"]),
                Route("/token", token, methods=["POST"]),
                Route("/v1/projects/{project}/locations/{location}/tuningJobs", jobs, methods=["GET", "POST"]),
                Route("/v1/projects/{project}/locations/{location}/tuningJobs/{job}", job, methods=["GET", "POST"]),
            ]
        )
