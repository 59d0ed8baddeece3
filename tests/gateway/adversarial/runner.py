"""Runs the adversarial corpus (``cases*.yaml``) against a real gateway and a recording upstream.

A case is data: the request (method, path, query, headers, and one of ``json`` / ``body`` /
``multipart`` / ``raw``), the personal data planted in it (``{PII}``, expanded to e-mail, phone, IBAN
and card unless the case lists ``pii``), and what must happen (``expect``). Every case asserts, on top
of its own expectation, the invariant of issue 8: the planted value reaches neither the upstream (path,
query, headers, body), nor the audit log, the gateway's log records, the metrics, nor the error body.

Variants generated here (honestly: the same request under another prefix): ``azure: true`` runs a case
against Azure OpenAI's ``/openai/v1`` routes and its classic ``/openai/...?api-version=`` routes too.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

HERE = Path(__file__).parent

PII: dict[str, dict[str, Any]] = {
    "EMAIL": {"value": "jane.roe@example.org", "action": "redact", "needles": ["jane.roe@example.org", "jane.roe"]},
    "PHONE": {
        "value": "+49 151 23456789",
        "action": "redact",
        "needles": ["151 23456789", "15123456789", "151%2023456789"],
    },
    "IBAN": {"value": "DE89370400440532013000", "action": "block", "needles": ["0532013000"]},
    "CARD": {"value": "4539 1488 0343 6467", "action": "block", "needles": ["0343 6467", "03436467", "0343%206467"]},
}
# the same data as a bare digit string (for JSON numbers and glued ids)
DIGITS = {"CARD": "4539148803436467"}


@dataclass
class Case:
    id: str
    klass: str
    spec: dict[str, Any]
    pii: str | None
    prefix: str = "openai"
    azure: str | None = None  # None | "v1" | "classic"

    @property
    def name(self) -> str:
        parts = [self.id]
        if self.azure:
            parts.append(f"azure-{self.azure}")
        if self.pii:
            parts.append(self.pii.lower())
        return "/".join(parts)


def load_cases() -> list[Case]:
    cases: list[Case] = []
    seen: set[str] = set()
    for path in sorted(HERE.glob("cases*.yaml")):
        for spec in yaml.safe_load(path.read_text()):
            if spec["id"] in seen:
                raise ValueError(f"duplicate case id {spec['id']} in {path.name}")
            seen.add(spec["id"])
            text = json.dumps(spec)
            if "pii" in spec:
                kinds = list(spec["pii"])
            elif "{PII" in text or "{DIGITS}" in text:
                kinds = list(PII)
            else:
                kinds = [None]  # type: ignore[list-item]
            forms: list[str | None] = [None]
            if spec.get("azure"):
                forms += ["v1", "classic"] if spec["azure"] is True else list(spec["azure"])
            for form in forms:
                for kind in kinds:
                    cases.append(Case(spec["id"], spec["class"], spec, kind, azure=form))
    return cases


@dataclass
class Context:
    gateway_url: str
    upstream: Any
    gateway: Any
    audit_path: Path
    values: dict[str, Any] = field(default_factory=dict)
    log_records: list[str] = field(default_factory=list)
    client: httpx.Client | None = None


class LogCollector(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage())


def _fill(value: Any, subs: dict[str, Any]) -> Any:
    if isinstance(value, dict) and set(value) <= {"$nest", "$pad", "$u"} and "$nest" in value:
        # {"$nest": [depth, doc]}: doc JSON-encoded into a string, that string put in {"n": ...} and encoded
        # again, `depth` levels deep (JSON inside strings inside JSON ...); "$pad" surrounds every level
        # with whitespace; "$u" writes the innermost level's non-alphanumerics as \u escapes
        depth, doc = value["$nest"]
        pad = value.get("$pad", "")
        out: Any = _fill(doc, subs)
        for level in range(depth):
            text = json.dumps(out if level == 0 else {"n": out})
            if level == 0 and value.get("$u"):
                text = "".join(c if c.isalnum() or c in '{}[]":, ' else f"\\u{ord(c):04x}" for c in text)
            out = pad + text + pad
        return out
    if isinstance(value, str):
        for key, sub in subs.items():
            token = "{" + key + "}"
            if value == token and not isinstance(sub, str):
                return sub
            if token in value:
                value = value.replace(token, str(sub))
        return value
    if isinstance(value, dict):
        return {_fill(k, subs): _fill(v, subs) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, subs) for v in value]
    return value


def _azure_path(path: str, form: str | None) -> tuple[str, str | None]:
    """(path, api-version) of an /openai/v1/... case path under the Azure upstream."""
    if form is None:
        return path, None
    rest = path.removeprefix("/openai/v1")
    if form == "v1":
        return "/azure/openai/v1" + rest, None
    return "/azure/openai" + rest, "2024-10-21"


def build_request(case: Case, ctx: Context) -> dict[str, Any]:
    spec = case.spec
    subs: dict[str, Any] = dict(ctx.values)
    subs["BIGINT"] = "1" * 5000
    if case.pii:
        subs["PII"] = PII[case.pii]["value"]
        subs["PII_Q"] = quote(PII[case.pii]["value"], safe="")
        subs["DIGITS"] = DIGITS.get(case.pii, "4539148803436467")
    if case.azure:
        subs["FILE_ID"] = subs.get("AZ_FILE_ID", "")
        subs["BATCH_FILE"] = subs.get("AZ_BATCH_FILE", "")
    req = {k: _fill(v, subs) for k, v in spec.items() if k not in ("id", "class", "expect", "azure", "pii", "then")}
    path, version = _azure_path(req.get("path", ""), case.azure)
    req["path"] = path
    if version is not None:
        q = req.get("query", "")
        req["query"] = f"api-version={version}" + (f"&{q}" if q else "")
    if case.azure:
        headers = dict(req.get("headers") or {})
        if "Authorization" in headers and headers["Authorization"] == "Bearer {TOKEN}":
            headers.pop("Authorization")
        req["headers"] = headers
    return req


def send(case: Case, ctx: Context, req: dict[str, Any]) -> tuple[int, bytes]:
    if "raw" in req:
        return _send_raw(ctx, req["raw"].replace("{PATH}", req["path"]))
    headers = {"Authorization": f"Bearer {ctx.values['TOKEN']}"}
    if case.azure:
        headers = {"api-key": ctx.values["TOKEN"]}
    for k, v in (req.get("headers") or {}).items():
        if v is None:
            headers.pop(k, None)
        else:
            headers[k] = v
    content: bytes | None = None
    if "json" in req:
        content = json.dumps(req["json"], ensure_ascii=False).encode()
        headers.setdefault("Content-Type", "application/json")
    elif "body" in req:
        content = req["body"].encode("utf-8", "surrogateescape")
    elif "multipart" in req:
        content, ctype = _multipart(req["multipart"], req.get("boundary", "adv-b0undary"))
        headers.setdefault("Content-Type", ctype)
    if req.get("gzip") and content is not None:
        content = gzip.compress(content)
        headers["Content-Encoding"] = "gzip"
    url = ctx.gateway_url + req["path"] + (("?" + req["query"]) if req.get("query") else "")
    if ctx.client is None:
        ctx.client = httpx.Client(timeout=60)
    r = ctx.client.request(req.get("method", "GET"), url, headers=headers, content=content)
    return r.status_code, r.content


def _multipart(parts: list[dict[str, Any]], boundary: str) -> tuple[bytes, str]:
    out = bytearray()
    for p in parts:
        if "raw" in p:
            out += f"--{boundary}\r\n".encode() + p["raw"].encode() + b"\r\n"
            continue
        disp = p.get("disposition") or (
            f'form-data; name="{p["name"]}"' + (f'; filename="{p["filename"]}"' if "filename" in p else "")
        )
        head = f"--{boundary}\r\nContent-Disposition: {disp}\r\n"
        if "content_type" in p:
            head += f"Content-Type: {p['content_type']}\r\n"
        for k, v in (p.get("headers") or {}).items():
            head += f"{k}: {v}\r\n"
        data = p.get("data", "")
        if isinstance(data, (dict, list)):
            data = "".join(json.dumps(r) + "\n" for r in data) if isinstance(data, list) else json.dumps(data)
        out += head.encode() + b"\r\n" + data.encode() + b"\r\n"
    out += f"--{boundary}--\r\n".encode()
    return bytes(out), f"multipart/form-data; boundary={boundary}"


def _send_raw(ctx: Context, raw: str) -> tuple[int, bytes]:
    host, port = ctx.gateway_url.removeprefix("http://").split(":")
    data = raw.replace("{HOST}", f"{host}:{port}").replace("{TOKEN}", ctx.values["TOKEN"]).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.settimeout(60)  # a hang guard only: the server answers or closes
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    resp = b"".join(chunks)
    if not resp:
        return 0, b""  # the server closed the connection without an answer (refused at the HTTP layer)
    status = int(resp.split(b" ", 2)[1])
    return status, resp.split(b"\r\n\r\n", 1)[-1]


def _unnest(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str) and depth < 16:
        s = value.strip()
        if s[:1] in ("{", "[") and s[-1:] in ("}", "]"):
            try:
                return _unnest(json.loads(s), depth + 1)
            except ValueError:
                return value
        return value
    if isinstance(value, dict):
        return {k: _unnest(v, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [_unnest(v, depth) for v in value]
    return value


def upstream_bytes(rec: Any) -> bytes:
    """Everything the upstream got, plus JSON bodies decoded (escapes resolved, nested strings unpacked)."""
    head = f"{rec.method} {rec.path}?{rec.query}\n" + "\n".join(f"{k}: {v}" for k, v in rec.headers.items())
    out = head.encode() + b"\n\n" + rec.body
    lines = rec.body.splitlines() if b"\n" in rec.body.strip() else [rec.body]
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        out += b"\n" + json.dumps(_unnest(doc), ensure_ascii=False).encode()
    return out


def expected(value: Any, action: str | None) -> Any:
    if isinstance(value, dict) and action is not None and action in value:
        return value[action]
    return value
