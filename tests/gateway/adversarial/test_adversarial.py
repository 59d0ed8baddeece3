"""The adversarial corpus (cases*.yaml next to this file), run against the real gateway and upstream.

Each case states what must happen; every case also checks that the personal data planted in it reached
neither the upstream, nor the audit log, the gateway's log records, the metrics, nor the error body.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from gw_support import CLIENT_TOKEN, chat, jsonl, make_env
from gw_upstream import FakeOpenAI
from runner import PII, Case, Context, LogCollector, build_request, expected, load_cases, send, upstream_bytes

from bastion.gateway.serve import ServerThread

CASES = load_cases()
GOOD = jsonl(chat("hello"), chat("world"))
HELD_KEY = "sk-held-key-for-adversarial-runs-000"


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory, policy: Any) -> Iterator[Context]:
    import os

    os.environ["BASTION_ADV_KEY"] = HELD_KEY
    tmp = tmp_path_factory.mktemp("adv")
    fake = FakeOpenAI()
    with ServerThread(fake.app()) as up:
        gw, srv = make_env(
            tmp,
            policy,
            fake,
            up.url,
            extra_upstreams={
                "azure": {"base_url": up.url, "adapter": "azure_openai", "jurisdiction": "EU"},
                "held": {
                    "base_url": up.url,
                    "adapter": "openai",
                    "jurisdiction": "US",
                    "auth": {"mode": "replace", "api_key_env": "BASTION_ADV_KEY"},
                },
            },
            max_upload_bytes=4 * 1024 * 1024,
        )
        logs: list[str] = []
        handler = LogCollector(logs)
        logging.getLogger().addHandler(handler)
        try:
            c = Context(srv.url, fake, gw, tmp / "audit.jsonl", log_records=logs)
            c.values["TOKEN"] = CLIENT_TOKEN
            c.values["GOOD_LEN"] = len(GOOD)
            c.values["FILE_ID"] = _upload(c, "openai", "fine-tune", GOOD)
            c.values["BATCH_FILE"] = _upload(
                c,
                "openai",
                "batch",
                jsonl({"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}),
            )
            c.values["AZ_FILE_ID"] = _upload(c, "azure", "fine-tune", GOOD)
            c.values["AZ_BATCH_FILE"] = _upload(
                c,
                "azure",
                "batch",
                jsonl({"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}),
            )
            yield c
        finally:
            logging.getLogger().removeHandler(handler)
            srv.stop()


def _upload(c: Context, upstream: str, purpose: str, data: bytes) -> str:
    import openai

    if upstream == "azure":
        client: Any = openai.AzureOpenAI(
            azure_endpoint=f"{c.gateway_url}/azure", api_key=CLIENT_TOKEN, api_version="2024-10-21", max_retries=0
        )
    else:
        client = openai.OpenAI(base_url=f"{c.gateway_url}/{upstream}/v1", api_key=CLIENT_TOKEN, max_retries=0)
    return str(client.files.create(file=("t.jsonl", io.BytesIO(data)), purpose=purpose).id)


def _new_upload(c: Context, prefix: str) -> str:
    r = httpx.post(
        f"{c.gateway_url}{prefix}/uploads",
        json={"bytes": len(GOOD), "filename": "t.jsonl", "mime_type": "application/jsonl", "purpose": "fine-tune"},
        headers={"Authorization": f"Bearer {CLIENT_TOKEN}"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _add_part(c: Context, prefix: str, upload_id: str, data: bytes) -> str:
    r = httpx.post(
        f"{c.gateway_url}{prefix}/uploads/{upload_id}/parts",
        files={"data": ("data", data)},
        headers={"Authorization": f"Bearer {CLIENT_TOKEN}"},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def _audit_size(c: Context) -> int:
    c.gateway.audit.drain()
    return c.audit_path.stat().st_size


def _audit_since(c: Context, offset: int) -> bytes:
    c.gateway.audit.drain()
    with open(c.audit_path, "rb") as fh:
        fh.seek(offset)
        return fh.read()


def test_corpus_size_and_classes() -> None:
    classes = {case.klass for case in CASES}
    assert len(CASES) >= 300, len(CASES)
    assert {
        "headers",
        "query",
        "passthrough_body",
        "multipart",
        "uploads",
        "path_ids",
        "json_values",
        "framing",
        "client_text",
        "jobs",
        "vision",
    } <= classes


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(ctx: Context, case: Case) -> None:
    text = json.dumps(case.spec)
    prefix = "/openai/v1"
    if "{UPLOAD_ID}" in text or "{PART_ID}" in text:
        ctx.values["UPLOAD_ID"] = _new_upload(ctx, prefix)
        ctx.values["PART_ID"] = _add_part(ctx, prefix, ctx.values["UPLOAD_ID"], GOOD)
    n_up = len(ctx.upstream.received)
    n_audit = _audit_size(ctx)
    n_logs = len(ctx.log_records)
    req = build_request(case, ctx)
    status, body = send(case, ctx, req)
    then = case.spec.get("then")
    if then == "complete_upload" and status == 200:
        upload_id = json.loads(body)["id"]
        part = _add_part(ctx, prefix, upload_id, GOOD)
        r = httpx.post(
            f"{ctx.gateway_url}{prefix}/uploads/{upload_id}/complete",
            json={"part_ids": [part]},
            headers={"Authorization": f"Bearer {CLIENT_TOKEN}"},
        )
        assert r.status_code == 200, r.text
    exp = case.spec.get("expect", {})
    action = PII[case.pii]["action"] if case.pii else None
    want_status = expected(exp.get("status", "any"), action)
    if want_status != "any":
        allowed = want_status if isinstance(want_status, list) else [want_status]
        assert status in allowed, (status, body[:500])
    code = expected(exp.get("code"), action)
    if code is not None:
        assert json.loads(body)["error"]["code"] == code, body[:500]
    calls = ctx.upstream.received[n_up:]
    want_fwd = expected(exp.get("forwarded", "any"), action)
    if want_fwd is True:
        assert calls, "the request should have been forwarded"
    elif want_fwd is False:
        assert calls == [], f"refused request reached the upstream: {[c.path for c in calls]}"
    if case.pii is None:
        return
    needles = [n.encode() for n in PII[case.pii]["needles"]]
    seen_upstream = b"\n".join(upstream_bytes(c) for c in calls)
    audit = _audit_since(ctx, n_audit)
    logs = "\n".join(ctx.log_records[n_logs:]).encode()
    for needle in needles:
        assert needle not in seen_upstream, f"planted {case.pii} reached the upstream"
        assert needle not in audit, f"planted {case.pii} is in the audit log"
        assert needle not in logs, f"planted {case.pii} is in a log record"
        if status >= 400:
            assert needle not in body, f"planted {case.pii} is echoed in the error"


def test_zz_metrics_carry_no_planted_data(ctx: Context) -> None:
    """After the whole corpus ran (this test is collected last): no planted value in any metric label."""
    metrics = httpx.get(f"{ctx.gateway_url}/metrics").content
    assert b"bastion_gateway_requests_total" in metrics
    for kind in PII.values():
        for needle in kind["needles"]:
            assert needle.encode() not in metrics
