"""Azure OpenAI through the gateway with the official SDK's ``AzureOpenAI(azure_endpoint=<gateway>)``."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gw_support import CLIENT_TOKEN, EMAIL, IBAN, PROVIDER_KEY, Env, chat, jsonl, make_env
from gw_upstream import FakeOpenAI, parse_multipart

API_VERSION = "2024-10-21"


@pytest.fixture(scope="module")
def az(tmp_path_factory: pytest.TempPathFactory, policy: Any, fake_upstream: tuple[FakeOpenAI, str]) -> Iterator[Env]:
    fake, url = fake_upstream
    tmp = tmp_path_factory.mktemp("az")
    gw, srv = make_env(
        tmp,
        policy,
        fake,
        url,
        extra_upstreams={"azure": {"base_url": url, "adapter": "azure_openai", "jurisdiction": "EU"}},
    )
    try:
        yield Env(fake, url, gw, srv.url, tmp)
    finally:
        srv.stop()


def client(env: Env, **kw: Any) -> openai.AzureOpenAI:
    kw.setdefault("api_key", CLIENT_TOKEN)
    return openai.AzureOpenAI(
        azure_endpoint=f"{env.url}/azure", api_version=API_VERSION, max_retries=0, timeout=60, **kw
    )


def test_classic_files_create_byte_identical_with_api_key(az: Env) -> None:
    data = jsonl(chat("What is the capital of France?", "Paris."))
    n = len(az.upstream.received)
    f = client(az).files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune")
    [rec] = az.upstream.received[n:]
    assert rec.path == "/openai/files" and rec.query == f"api-version={API_VERSION}"
    assert rec.headers["api-key"] == CLIENT_TOKEN and "authorization" not in rec.headers
    assert parse_multipart(rec.headers["content-type"], rec.body)["file"][1] == data
    admitted = az.gateway.state.admitted("azure", f.id)
    assert admitted is not None and admitted.client is not None and admitted.purpose == "fine-tune"


def test_classic_redaction_block_and_jobs(az: Env) -> None:
    c = client(az)
    f = c.files.create(file=("t.jsonl", io.BytesIO(jsonl(chat(f"mail {EMAIL}")))), purpose="fine-tune")
    assert EMAIL.encode() not in az.upstream.contents[f.id]
    n = len(az.upstream.received)
    with pytest.raises(openai.PermissionDeniedError) as info:
        c.files.create(file=("t.jsonl", io.BytesIO(jsonl(chat(f"IBAN {IBAN}")))), purpose="fine-tune")
    assert info.value.code == "policy_block" and az.upstream.received[n:] == []
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix="team-a")
    assert job.training_file == f.id
    entry = [e["data"] for e in az.audit_entries() if e["data"]["route"] == "fine_tuning.jobs.create"][-1]
    assert entry["outcome"] == "forwarded" and entry["upstream"] == "azure"
    assert entry["residency"]["allowed"] is True and entry["residency"]["jurisdiction"] == "EU"
    with pytest.raises(openai.PermissionDeniedError) as unscanned:
        c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-0123456789abcdef0123456789abcdef")
    assert unscanned.value.code == "unscanned_file"


def test_a_job_id_azure_issued_is_not_read_as_personal_data_when_sent_back(az: Env) -> None:
    """Azure OpenAI's job ids hold 32 hex digits, and about 1 % of them read as a card or id number on their
    own: one the upstream named through the gateway can be retrieved; the same shape it never named cannot."""
    issued, never = "ftjob-6585669831325548505abcdefabcd", "ftjob-6069452754643211893abcdefabcd"
    c = client(az)
    f = c.files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("a clean line")))), purpose="fine-tune")
    az.upstream.next_job_ids.append(issued)
    assert c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id).id == issued
    assert c.fine_tuning.jobs.retrieve(issued).id == issued
    entry = [e["data"] for e in az.audit_entries() if e["data"]["route"] == "fine_tuning.jobs.retrieve"][-1]
    assert entry["known_ids"] == {"params": ["job_id"], "entity_types": ["PAYMENT_CARD"]}
    n = len(az.upstream.received)
    with pytest.raises(openai.BadRequestError) as err:
        c.fine_tuning.jobs.retrieve(never)
    assert err.value.code == "invalid_id" and az.upstream.received[n:] == []
    # the same as a list cursor: the issued id is forwarded, the other refused
    c.fine_tuning.jobs.list(after=issued)
    assert az.upstream.received[-1].query.endswith(f"after={issued}")
    entry = [e["data"] for e in az.audit_entries() if e["data"]["route"] == "fine_tuning.jobs.list"][-1]
    assert entry["known_query"] == {"params": ["after"], "entity_types": ["PAYMENT_CARD"]}
    n = len(az.upstream.received)
    with pytest.raises(openai.BadRequestError) as err:
        c.fine_tuning.jobs.list(after=never)
    assert err.value.code == "invalid_query" and az.upstream.received[n:] == []


def test_file_admitted_on_openai_is_not_admitted_on_azure(az: Env) -> None:
    f = az.client().files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("x")))), purpose="fine-tune")
    with pytest.raises(openai.PermissionDeniedError) as info:
        client(az).fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    assert info.value.code == "unscanned_file"


def test_entra_bearer_token_forwarded_as_bearer(az: Env) -> None:
    n = len(az.upstream.received)
    c = openai.AzureOpenAI(
        azure_endpoint=f"{az.url}/azure", api_version=API_VERSION, azure_ad_token="eyJ0eXAi.entra.token", max_retries=0
    )
    c.files.list()
    rec = az.upstream.received[n]
    assert rec.headers["authorization"] == "Bearer eyJ0eXAi.entra.token" and "api-key" not in rec.headers


def test_v1_routes_with_openai_client(az: Env) -> None:
    c = openai.OpenAI(base_url=f"{az.url}/azure/openai/v1", api_key=CLIENT_TOKEN, max_retries=0)
    n = len(az.upstream.received)
    f = c.files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("hi")))), purpose="fine-tune")
    assert az.upstream.received[n].path == "/openai/v1/files"
    batch_file = c.files.create(
        file=(
            "b.jsonl",
            io.BytesIO(jsonl({"custom_id": "1", "method": "POST", "url": "/v1/chat/completions", "body": {"m": 1}})),
        ),
        purpose="batch",
    )
    b = c.batches.create(input_file_id=batch_file.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert b.id.startswith("batch_")
    assert f.id


def test_chunked_upload_through_azure(az: Env) -> None:
    data = jsonl(*[chat(f"note {i} {EMAIL}" if i == 3 else f"note {i}") for i in range(10)])
    up = client(az).uploads.upload_file_chunked(
        file=data,
        filename="train.jsonl",
        bytes=len(data),
        mime_type="application/jsonl",
        purpose="fine-tune",
        part_size=50,
        md5=hashlib.md5(data).hexdigest(),
    )
    assert up.status == "completed" and up.file is not None
    assert EMAIL.encode() not in az.upstream.contents[up.file.id]
    created = [r for r in az.upstream.received if r.path == "/openai/uploads"][-1]
    assert created.query == f"api-version={API_VERSION}"


def test_files_import_refused_by_default(az: Env) -> None:
    n = len(az.upstream.received)
    r = httpx.post(
        f"{az.url}/azure/openai/files/import",
        params={"api-version": API_VERSION},
        json={"purpose": "fine-tune", "filename": "t.jsonl", "content_url": "https://blob.example/t.jsonl?sig=x"},
        headers={"api-key": CLIENT_TOKEN},
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "route_not_allowed"
    assert "download" in r.json()["error"]["message"]
    assert az.upstream.received[n:] == []


def test_classic_route_needs_api_version(az: Env) -> None:
    n = len(az.upstream.received)
    r = httpx.get(f"{az.url}/azure/openai/files", headers={"api-key": CLIENT_TOKEN})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_query"
    assert "api-version" in r.json()["error"]["message"] and az.upstream.received[n:] == []


@pytest.fixture()
def held(
    tmp_path: Path, policy: Any, fake_upstream: tuple[FakeOpenAI, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Env]:
    monkeypatch.setenv("BASTION_TEST_AZURE_KEY", PROVIDER_KEY)
    fake, url = fake_upstream
    gw, srv = make_env(
        tmp_path,
        policy,
        fake,
        url,
        extra_upstreams={
            "azure": {
                "base_url": url,
                "adapter": "azure_openai",
                "jurisdiction": "EU",
                "auth": {"mode": "replace", "api_key_env": "BASTION_TEST_AZURE_KEY"},
            }
        },
    )
    try:
        yield Env(fake, url, gw, srv.url, tmp_path)
    finally:
        srv.stop()


def test_held_key_sent_as_api_key(held: Env) -> None:
    n = len(held.upstream.received)
    client(held, api_key="client-side-credential").files.list()
    rec = held.upstream.received[n]
    assert rec.headers["api-key"] == PROVIDER_KEY and "authorization" not in rec.headers
    text = (held.state_dir / "audit.jsonl").read_text()
    assert PROVIDER_KEY not in text and "client-side-credential" not in text
    assert json.loads(text.splitlines()[-1])["data"]["upstream"] == "azure"
