"""Property (hypothesis): personal data planted anywhere in a request, in any framing, never appears in what
the upstream receives, in the audit log, in the gateway's log records, in the metrics or in an error.

In-process: the gateway app over ``httpx.ASGITransport``, the upstream an injected recording
``httpx.MockTransport`` (so hundreds of examples run in seconds)."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from gw_support import CLIENT_TOKEN, POLICY_YAML
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.gateway.app import create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.policies import load_policy_text

PII = {
    "email": ("jane.roe@example.org", ["jane.roe@example.org", "jane.roe%40example.org"]),
    "phone": ("+49 151 23456789", ["151 23456789", "15123456789", "151%2023456789"]),
    "iban": ("DE89370400440532013000", ["0532013000"]),
    "card": ("4539 1488 0343 6467", ["0343 6467", "03436467", "0343%206467"]),
}
ROUTES = [
    ("GET", "/openai/v1/files", None),
    ("GET", "/openai/v1/models", None),
    ("POST", "/openai/v1/fine_tuning/jobs", "job"),
    ("POST", "/openai/v1/batches", "batch"),
    ("POST", "/openai/v1/fine_tuning/jobs/ftjob-abc/cancel", None),
    ("DELETE", "/openai/v1/files/file-abc", None),
    ("POST", "/openai/v1/files", "multipart"),
    ("POST", "/openai/v1/uploads", "upload"),
    ("GET", "/azure/openai/v1/files", None),
    ("POST", "/azure/openai/v1/fine_tuning/jobs", "job"),
]
PLACEMENTS = [
    "header_value",
    "header_name_value",
    "query_value",
    "query_key",
    "path_id",
    "json_value",
    "json_key",
    "json_number",
    "json_nested",
    "body_on_bodyless",
    "multipart_field",
    "multipart_filename",
    "multipart_record",
    "multipart_part_header",
    "upstream_name",
]


class Recorder:
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        head = f"{request.method} {request.url}\n" + "\n".join(f"{k}: {v}" for k, v in request.headers.items())
        self.seen.append(head.encode() + b"\n" + body + b"\n" + _decoded(body))
        if request.url.path.endswith("/files") and request.method == "POST":
            return httpx.Response(200, json={"id": "file-rec1", "object": "file"})
        return httpx.Response(200, json={"id": "obj_1", "object": "x"})


def _decoded(body: bytes) -> bytes:
    out = []
    for line in body.splitlines() or [body]:
        try:
            out.append(json.dumps(json.loads(line), ensure_ascii=False).encode())
        except ValueError:
            continue
    return b"\n".join(out)


class Logs(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("prop")
    policy = load_policy_text(POLICY_YAML, source="prop.yaml")
    rec = Recorder()
    cfg = config_from_mapping(
        {
            "upstreams": {
                "openai": {"base_url": "https://api.openai.com"},
                "azure": {"base_url": "https://res1.openai.azure.com", "adapter": "azure_openai", "jurisdiction": "EU"},
            },
            "gateway": {"state_dir": str(tmp)},
        }
    )
    gw = create_gateway(cfg, policy, transport=httpx.MockTransport(rec))
    logs = Logs()
    logging.getLogger().addHandler(logs)
    loop = asyncio.new_event_loop()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=gw.app), base_url="http://gw")
    yield gw, rec, logs, loop, client
    loop.run_until_complete(client.aclose())
    loop.run_until_complete(gw.aclose())
    loop.close()
    logging.getLogger().removeHandler(logs)


def build(route: tuple[str, str, str | None], placement: str, value: str, gz: bool) -> dict[str, Any]:
    method, path, kind = route
    headers: dict[str, str] = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
    if path.startswith("/azure"):
        headers = {"api-key": CLIENT_TOKEN}
    params: list[tuple[str, str]] = []
    body: bytes | None = None
    job = {"model": "gpt-4o-mini", "training_file": "file-unknown1"}
    doc: Any = {
        "batch": {"input_file_id": "file-unknown1", "endpoint": "/v1/chat/completions", "completion_window": "24h"},
        "upload": {"bytes": 10, "filename": "t.jsonl", "mime_type": "application/jsonl", "purpose": "fine-tune"},
    }.get(kind or "", job)
    record = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    fields = {"purpose": "fine-tune"}
    filename = "t.jsonl"
    part_header = ""
    if placement == "header_value":
        headers["X-Note"] = value
    elif placement == "header_name_value":
        headers["OpenAI-Organization"] = value
    elif placement == "query_value":
        params.append(("after", value))
    elif placement == "query_key":
        params.append((value, "1"))
    elif placement == "path_id":
        path = (
            path.rsplit("/", 1)[0] + "/" + quote(value, safe="")
            if path.count("/") > 3
            else path + "/" + quote(value, safe="")
        )
    elif placement == "json_value":
        doc = {**doc, "metadata": {"note": value}}
    elif placement == "json_key":
        doc = {**doc, "metadata": {value: "x"}}
    elif placement == "json_number":
        digits = "".join(c for c in value if c.isdigit())
        body = json.dumps(doc)[:-1].encode() + b', "seed": ' + digits.encode() + b"}"
    elif placement == "json_nested":
        doc = {**doc, "metadata": {"blob": json.dumps({"n": json.dumps({"n": json.dumps({"v": value})})})}}
    elif placement == "body_on_bodyless":
        body = json.dumps({"reason": value}).encode()
    elif placement == "multipart_field":
        fields = {**fields, "expires_after[anchor]": value}
    elif placement == "multipart_filename":
        filename = value + ".jsonl"
    elif placement == "multipart_record":
        record = {"messages": [{"role": "user", "content": value}, {"role": "assistant", "content": "ok"}]}
    elif placement == "multipart_part_header":
        part_header = f"X-Note: {value}\r\n"
    elif placement == "upstream_name":
        path = "/" + quote(value, safe="") + "/v1/files"
    if kind == "multipart" or placement.startswith("multipart"):
        b = "prop-b0undary"
        parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in fields.items()]
        parts.append(
            f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n{part_header}'
            f"Content-Type: application/jsonl\r\n\r\n{json.dumps(record)}\n\r\n--{b}--\r\n"
        )
        body = "".join(parts).encode()
        headers["Content-Type"] = f"multipart/form-data; boundary={b}"
        if kind != "multipart":
            method, path = "POST", "/openai/v1/files"
    elif body is None and kind is not None:
        body = json.dumps(doc).encode()
    if body is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    if gz and body is not None:
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return {"method": method, "url": path, "params": params, "headers": headers, "content": body}


@given(
    route=st.sampled_from(ROUTES),
    placement=st.sampled_from(PLACEMENTS),
    kind=st.sampled_from(sorted(PII)),
    gz=st.booleans(),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_planted_data_never_leaks(world: Any, route: Any, placement: str, kind: str, gz: bool) -> None:
    gw, rec, logs, loop, client = world
    value, needles = PII[kind]
    req = build(route, placement, value, gz)
    n_seen, n_logs = len(rec.seen), len(logs.lines)
    gw.audit.drain()
    start = gw.settings.audit_path.stat().st_size if gw.settings.audit_path.exists() else 0
    try:
        r = loop.run_until_complete(client.request(**req))
    except httpx.LocalProtocolError:
        return  # the client library itself refuses to send it (e.g. a header value it cannot encode)
    gw.audit.drain()
    with open(gw.settings.audit_path, "rb") as fh:
        fh.seek(start)
        audit = fh.read()
    upstream = b"\n".join(rec.seen[n_seen:])
    log_text = "\n".join(logs.lines[n_logs:]).encode()
    metrics = loop.run_until_complete(client.get("/metrics")).content
    for needle in needles:
        nb = needle.encode()
        assert nb not in upstream, (placement, kind, "upstream")
        assert nb not in audit, (placement, kind, "audit")
        assert nb not in log_text, (placement, kind, "log")
        assert nb not in metrics, (placement, kind, "metrics")
        if r.status_code >= 400:
            assert nb not in r.content, (placement, kind, "error")
    assert r.status_code < 500 or r.status_code == 503, r.text
