"""POST /v1/files through the gateway with the official openai SDK against a real local upstream."""

from __future__ import annotations

import io
import json
from typing import Any

import openai
import pytest
from gw_support import CLIENT_TOKEN, EMAIL, IBAN, Env, chat, jsonl, uploaded


def test_clean_upload_arrives_byte_identical(env: Env) -> None:
    data = jsonl(chat("What is the capital of France?", "Paris."), chat("2+2?", "4"))
    n = len(env.upstream.received)
    f = env.client().files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune")
    assert f.id.startswith("file-") and f.purpose == "fine-tune" and f.filename == "train.jsonl"
    assert uploaded(env, n) == [data]
    # the gateway remembered the admitted file
    admitted = env.gateway.state.admitted("openai", f.id)
    assert admitted is not None and admitted.decision == "allow" and admitted.records == 2


def test_redacted_upload_arrives_redacted(env: Env) -> None:
    data = jsonl(chat(f"Mail me at {EMAIL} please"), chat("no pii here"))
    n = len(env.upstream.received)
    f = env.client().files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune")
    [got] = uploaded(env, n)
    assert EMAIL.encode() not in got
    lines = got.splitlines()
    assert json.loads(lines[0])["messages"][0]["content"] == "Mail me at [EMAIL] please"
    assert lines[1] == data.splitlines()[1]  # untouched record is byte-identical
    rec = env.upstream.received[n]
    assert int(rec.headers["content-length"]) == len(rec.body)
    assert env.gateway.state.admitted("openai", f.id).decision == "redact"  # type: ignore[union-attr]
    entry = [e for e in env.audit_entries() if e["data"].get("event") == "decision"][-1]["data"]
    assert entry["decision"] == "redact" and entry["scan"]["counts"] == {"EMAIL": {"redact": 1}}
    assert EMAIL not in json.dumps(env.audit_entries())


def test_blocked_upload_never_arrives(env: Env) -> None:
    data = jsonl(chat("hello"), chat(f"wire it to {IBAN}"), chat("bye"))
    n = len(env.upstream.received)
    with pytest.raises(openai.PermissionDeniedError) as info:
        env.client().files.create(file=("train.jsonl", io.BytesIO(data)), purpose="fine-tune")
    assert env.upstream.received[n:] == []
    err = info.value.body
    assert isinstance(err, dict)
    assert err["code"] == "policy_block" and err["type"] == "invalid_request_error"
    assert "fin.iban" in err["message"] and "record(s): 2" in err["message"] and "IBAN" in err["message"]
    assert IBAN not in err["message"]
    last = env.audit_entries()[-1]["data"]
    assert last["decision"] == "block" and last["reason"] == "policy_block" and last["blocked_records"] == [2]
    assert IBAN not in json.dumps(env.audit_entries())


def test_client_token_never_in_audit_log(env: Env) -> None:
    env.client().files.create(file=("t.jsonl", io.BytesIO(jsonl(chat("x")))), purpose="fine-tune")
    text = (env.state_dir / "audit.jsonl").read_text()
    assert CLIENT_TOKEN not in text
    import hashlib

    fp = "sha256:" + hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest()[:16]
    assert env.audit_entries()[-1]["data"]["client"] == fp


def test_other_purposes_scanned_per_record_shape(env: Env) -> None:
    # v2 (issue 8): batch/evals/user_data uploads are scanned too, each against its record shape
    n = len(env.upstream.received)
    with pytest.raises(openai.BadRequestError) as bad:
        env.client().files.create(file=("b.jsonl", io.BytesIO(jsonl(chat("x")))), purpose="batch")
    assert bad.value.code == "invalid_record"
    with pytest.raises(openai.PermissionDeniedError) as info:
        env.client().files.create(file=("v.png", io.BytesIO(b"\x89PNG")), purpose="vision")
    assert info.value.code == "purpose_not_allowed"
    assert env.upstream.received[n:] == []


def test_dpo_and_legacy_records_accepted(env: Env) -> None:
    dpo = {
        "input": {"messages": [{"role": "user", "content": f"write to {EMAIL}"}]},
        "preferred_output": [{"role": "assistant", "content": "Sure."}],
        "non_preferred_output": [{"role": "assistant", "content": "No."}],
    }
    legacy = {"prompt": "Q: ", "completion": "A"}
    n = len(env.upstream.received)
    env.client().files.create(file=("p.jsonl", io.BytesIO(jsonl(dpo, legacy))), purpose="fine-tune")
    [got] = uploaded(env, n)
    assert json.loads(got.splitlines()[0])["input"]["messages"][0]["content"] == "write to [EMAIL]"


def test_malformed_record_refused(env: Env) -> None:
    n = len(env.upstream.received)
    with pytest.raises(openai.BadRequestError) as info:
        env.client().files.create(file=("p.jsonl", io.BytesIO(jsonl(chat("a"), {"text": "b"}))), purpose="fine-tune")
    assert info.value.code == "invalid_record" and "record 2" in str(info.value.body)
    assert env.upstream.received[n:] == []


def test_bundled_eu_gdpr_pack_end_to_end(tmp_path: Any, fake_upstream: Any) -> None:
    from gw_support import make_env

    from bastion.policies import load_policy

    fake, url = fake_upstream
    gw, srv = make_env(tmp_path, load_policy("pack:eu-gdpr"), fake, url)
    try:
        env = Env(fake, url, gw, srv.url, tmp_path)
        n = len(fake.received)
        data = jsonl(chat(f"mail {EMAIL}"), chat("card 4111 1111 1111 1111"))
        with pytest.raises(openai.PermissionDeniedError) as info:
            env.client().files.create(file=("t.jsonl", io.BytesIO(data)), purpose="fine-tune")
        assert info.value.code == "policy_block" and "4111" not in info.value.message
        assert fake.received[n:] == []
        f = env.client().files.create(file=("t.jsonl", io.BytesIO(jsonl(chat(f"mail {EMAIL}")))), purpose="fine-tune")
        assert EMAIL.encode() not in fake.contents[f.id]
    finally:
        srv.stop()
