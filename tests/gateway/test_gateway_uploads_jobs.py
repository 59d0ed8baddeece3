"""The multi-part Uploads API and fine-tuning jobs through the gateway, with the official SDK."""

from __future__ import annotations

import hashlib
import io
import json
import re

import openai
import pytest
from gw_support import EMAIL, IBAN, Env, chat, jsonl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st


def test_chunked_upload_with_line_spanning_parts_is_scanned_and_redacted(env: Env) -> None:
    records = [chat(f"note {i}: contact {EMAIL}" if i == 7 else f"note {i}") for i in range(20)]
    data = jsonl(*records)
    n = len(env.upstream.received)
    # part_size 37 cuts lines (and the e-mail address) across many parts
    up = env.client().uploads.upload_file_chunked(
        file=data,
        filename="train.jsonl",
        bytes=len(data),
        mime_type="application/jsonl",
        purpose="fine-tune",
        part_size=37,
        md5=hashlib.md5(data).hexdigest(),
    )
    assert up.status == "completed" and up.file is not None
    content = env.upstream.contents[up.file.id]
    assert EMAIL.encode() not in content
    assert json.loads(content.splitlines()[7])["messages"][0]["content"] == "note 7: contact [EMAIL]"
    assert len(content.splitlines()) == 20
    # nothing reached the upstream before complete: the first upstream call is the gateway's own create
    calls = env.upstream.received[n:]
    assert calls[0].path == "/v1/uploads"
    assert json.loads(calls[0].body)["bytes"] == len(content)
    admitted = env.gateway.state.admitted("openai", up.file.id)
    assert admitted is not None and admitted.decision == "redact"


def test_upload_parts_reordered_by_part_ids(env: Env) -> None:
    data = jsonl(chat("first"), chat("second"))
    c = env.client()
    up = c.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    cut = 30
    p2 = c.uploads.parts.create(upload_id=up.id, data=data[cut:])
    p1 = c.uploads.parts.create(upload_id=up.id, data=data[:cut])
    done = c.uploads.complete(upload_id=up.id, part_ids=[p1.id, p2.id])
    assert done.file is not None
    assert env.upstream.contents[done.file.id] == data
    # the gateway's own ids are letters: a digit run in one could read as personal data when sent back
    assert re.fullmatch(r"upload_bst[a-z]{24}", up.id) and re.fullmatch(r"part_bst[a-z]{24}", p1.id)


def test_blocked_chunked_upload_never_reaches_upstream(env: Env) -> None:
    data = jsonl(chat("ok"), chat(f"IBAN {IBAN}"))
    n = len(env.upstream.received)
    with pytest.raises(openai.PermissionDeniedError) as info:
        env.client().uploads.upload_file_chunked(
            file=data,
            filename="t.jsonl",
            bytes=len(data),
            mime_type="application/jsonl",
            purpose="fine-tune",
            part_size=16,
        )
    assert info.value.code == "policy_block"
    assert env.upstream.received[n:] == []


def test_upload_cancel_and_wrong_size(env: Env) -> None:
    c = env.client()
    data = jsonl(chat("x"))
    up = c.uploads.create(bytes=len(data) + 5, filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    part = c.uploads.parts.create(upload_id=up.id, data=data)
    with pytest.raises(openai.BadRequestError, match="add up to"):
        c.uploads.complete(upload_id=up.id, part_ids=[part.id])
    cancelled = c.uploads.cancel(upload_id=up.id)
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.NotFoundError):
        c.uploads.complete(upload_id=up.id, part_ids=[part.id])


def test_upload_belongs_to_its_client(env: Env) -> None:
    data = jsonl(chat("x"))
    up = env.client().uploads.create(bytes=len(data), filename="t.jsonl", mime_type="text/jsonl", purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        env.client(api_key="someone-else").uploads.parts.create(upload_id=up.id, data=data)


def test_job_on_admitted_file_is_forwarded(env: Env) -> None:
    c = env.client()
    f = c.files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("hello")))), purpose="fine-tune")
    v = c.files.create(file=("v.jsonl", io.BytesIO(jsonl(chat("eval")))), purpose="fine-tune")
    job = c.fine_tuning.jobs.create(
        model="gpt-4o-mini",
        training_file=f.id,
        validation_file=v.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}},
    )
    assert job.id.startswith("ftjob-") and job.training_file == f.id
    entry = [e["data"] for e in env.audit_entries() if e["data"]["route"] == "fine_tuning.jobs.create"][-2]
    assert entry["event"] == "decision" and entry["files"]["training_file"]["file_id"] == f.id
    assert entry["job_method"] == "dpo" and entry["residency"]["allowed"] is True


def test_an_admitted_file_whose_id_reads_as_personal_data_is_still_usable(env: Env) -> None:
    # upstream ids are random: now and then their characters form a valid card, phone or id number
    # (this one holds a Luhn-valid card); the id of a file this gateway admitted is not client data
    odd = "file-ab4539148803436467cdef"
    env.upstream.next_file_ids.append(odd)
    c = env.client()
    f = c.files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("hello")))), purpose="fine-tune")
    assert f.id == odd and c.files.retrieve(f.id).id == odd
    job = c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=odd, suffix="x")
    assert job.training_file == odd
    [sent] = [r for r in env.upstream.calls("POST", "/v1/fine_tuning/jobs")][-1:]
    assert json.loads(sent.body)["training_file"] == odd
    # the same value where it is not an admitted file's id is scanned as ever (a card: blocked)
    with pytest.raises(openai.PermissionDeniedError) as info:
        c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=odd, suffix=odd)
    assert info.value.code == "policy_block"
    with pytest.raises(openai.BadRequestError) as bad:
        c.files.retrieve("file-cd4539148803436467abef")
    assert bad.value.code == "invalid_id"


def test_job_on_unscanned_file_refused(env: Env) -> None:
    # a file that exists upstream but was not uploaded through the gateway
    env.upstream.files["file-direct"] = {"id": "file-direct"}
    n = len(env.upstream.received)
    with pytest.raises(openai.PermissionDeniedError) as info:
        env.client().fine_tuning.jobs.create(model="gpt-4o-mini", training_file="file-direct")
    assert info.value.code == "unscanned_file" and info.value.param == "training_file"
    assert env.upstream.received[n:] == []


def test_residency_blocks_personal_data_to_offshore_upstream(env: Env) -> None:
    n = len(env.upstream.received)
    with pytest.raises(openai.PermissionDeniedError) as info:
        env.client(prefix="offshore").files.create(
            file=("t.jsonl", io.BytesIO(jsonl(chat("staff EMP-123456 asked")))), purpose="fine-tune"
        )
    assert info.value.code == "residency" and "res.personal-us-eu" in info.value.message
    assert env.upstream.received[n:] == []
    # personal data kept as is may go to the US upstream; redacted or clean data may go anywhere
    f = env.client().files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("staff EMP-123456")))), purpose="fine-tune")
    assert env.gateway.state.admitted("openai", f.id).classification == "personal"  # type: ignore[union-attr]
    f = env.client(prefix="offshore").files.create(
        file=("t.jsonl", io.BytesIO(jsonl(chat(f"nothing personal left: {EMAIL}")))), purpose="fine-tune"
    )
    assert f.id.startswith("file-")


def test_job_file_admitted_for_other_upstream_refused(env: Env) -> None:
    f = env.client().files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("hello")))), purpose="fine-tune")
    with pytest.raises(openai.PermissionDeniedError) as info:
        env.client(prefix="offshore").fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id)
    assert info.value.code == "unscanned_file"


def test_job_metadata_goes_through_policy(env: Env) -> None:
    c = env.client()
    f = c.files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("hello")))), purpose="fine-tune")
    n = len(env.upstream.received)
    c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, metadata={"owner": EMAIL})
    sent = json.loads(env.upstream.received[n].body)
    assert sent["metadata"] == {"owner": "[EMAIL]"} and sent["training_file"] == f.id
    n = len(env.upstream.received)
    with pytest.raises(openai.PermissionDeniedError) as info:
        c.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=f.id, suffix=IBAN)
    assert info.value.code == "policy_block" and IBAN not in info.value.message
    assert env.upstream.received[n:] == []


@given(cuts=st.lists(st.integers(min_value=1, max_value=10_000), min_size=1, max_size=6, unique=True))
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_part_split_gives_the_same_upstream_file(env: Env, cuts: list[int]) -> None:
    from bastion.policies import JsonlScanner, PolicyEngine

    records = [chat(f"row {i} mail {EMAIL}" if i % 3 == 0 else f"row {i} plain text") for i in range(40)]
    data = jsonl(*records)
    points = sorted({c % len(data) for c in cuts} - {0})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    c = env.client()
    up = c.uploads.create(bytes=len(data), filename="t.jsonl", mime_type="application/jsonl", purpose="fine-tune")
    part_ids = [c.uploads.parts.create(upload_id=up.id, data=p).id for p in pieces]
    done = c.uploads.complete(upload_id=up.id, part_ids=part_ids)
    assert done.file is not None
    scanner = JsonlScanner(PolicyEngine(env.gateway.engine.policy), source="reference")
    expected = scanner.feed(data) + scanner.finish()
    assert env.upstream.contents[done.file.id] == expected
