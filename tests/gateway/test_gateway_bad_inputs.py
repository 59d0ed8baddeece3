"""Bad uploads are refused clearly, audited, and never forwarded (fail closed)."""

from __future__ import annotations

import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from gw_support import CLIENT_TOKEN, EMAIL, Env, chat, jsonl, make_env, uploaded
from gw_upstream import FakeOpenAI

AUTH = {"Authorization": f"Bearer {CLIENT_TOKEN}"}


def form(*parts: tuple[str, str | None, bytes], boundary: str = "XyZ-boundary") -> tuple[bytes, dict[str, str]]:
    body = bytearray()
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), {"Content-Type": f"multipart/form-data; boundary={boundary}", **AUTH}


def post_files(env: Env, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{env.url}/openai/v1/files", content=body, headers=headers, timeout=60)


def refused(env: Env, r: httpx.Response, status: int, code: str, n: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code, err
    assert env.upstream.received[n:] == [], "a refused upload reached the upstream"
    last = env.audit_entries()[-1]["data"]
    assert last["decision"] == "block" and last["reason"] == code
    return err  # type: ignore[no-any-return]


GOOD = jsonl(chat("hello"), chat("world"))


def test_truncated_multipart(env: Env) -> None:
    body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", GOOD))
    n = len(env.upstream.received)
    err = refused(env, post_files(env, body[:-30], headers), 400, "invalid_upload", n)
    assert "truncated" in err["message"]


def test_invalid_utf8(env: Env) -> None:
    data = GOOD + b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n'
    body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", data))
    n = len(env.upstream.received)
    err = refused(env, post_files(env, body, headers), 400, "invalid_upload", n)
    assert "UTF-8" in err["message"] and ":3" in err["message"]


def test_non_json_line(env: Env) -> None:
    data = GOOD + b"this is not json " + EMAIL.encode() + b"\n"
    body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", data))
    n = len(env.upstream.received)
    err = refused(env, post_files(env, body, headers), 400, "invalid_upload", n)
    assert "record 3 is not valid JSON" in err["message"] and EMAIL not in err["message"]


def test_empty_file(env: Env) -> None:
    body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", b""))
    n = len(env.upstream.received)
    err = refused(env, post_files(env, body, headers), 400, "invalid_upload", n)
    assert "empty" in err["message"]


@pytest.mark.parametrize(
    "parts",
    [
        [("purpose", None, b"fine-tune"), ("purpose", None, b"batch"), ("file", "t.jsonl", GOOD)],
        [("purpose", None, b"fine-tune"), ("file", "a.jsonl", GOOD), ("file", "b.jsonl", GOOD)],
    ],
    ids=["purpose-twice", "file-twice"],
)
def test_duplicate_form_fields(env: Env, parts: list[tuple[str, str | None, bytes]]) -> None:
    body, headers = form(*parts)
    n = len(env.upstream.received)
    err = refused(env, post_files(env, body, headers), 400, "invalid_upload", n)
    assert "more than once" in err["message"]


def test_missing_purpose_and_missing_file(env: Env) -> None:
    n = len(env.upstream.received)
    body, headers = form(("file", "t.jsonl", GOOD))
    assert refused(env, post_files(env, body, headers), 400, "invalid_upload", n)["param"] == "purpose"
    body, headers = form(("purpose", None, b"fine-tune"))
    assert refused(env, post_files(env, body, headers), 400, "invalid_upload", n)["param"] == "file"


def test_not_multipart(env: Env) -> None:
    n = len(env.upstream.received)
    r = httpx.post(f"{env.url}/openai/v1/files", json={"file": "x"}, headers=AUTH)
    refused(env, r, 415, "invalid_upload", n)


def test_gzip_body_is_decoded_and_scanned(env: Env) -> None:
    data = jsonl(chat(f"write to {EMAIL}"), chat("plain"))
    body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", data))
    n = len(env.upstream.received)
    r = post_files(env, gzip.compress(body), {**headers, "Content-Encoding": "gzip"})
    assert r.status_code == 200, r.text
    [got] = uploaded(env, n)
    assert EMAIL.encode() not in got and b"[EMAIL]" in got
    assert "content-encoding" not in env.upstream.received[n].headers


def test_corrupt_gzip_refused(env: Env) -> None:
    body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", GOOD))
    z = bytearray(gzip.compress(body))
    z[20:30] = b"\x00" * 10
    n = len(env.upstream.received)
    err = refused(env, post_files(env, bytes(z), {**headers, "Content-Encoding": "gzip"}), 400, "invalid_upload", n)
    assert "gzip" in err["message"]
    # truncated gzip stream
    trunc = gzip.compress(body)[:-12]
    refused(env, post_files(env, trunc, {**headers, "Content-Encoding": "gzip"}), 400, "invalid_upload", n)


def test_unsupported_encoding_refused(env: Env) -> None:
    body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", GOOD))
    n = len(env.upstream.received)
    refused(env, post_files(env, body, {**headers, "Content-Encoding": "br"}), 415, "unsupported_content_encoding", n)


def test_gzip_bomb_capped(env: Env) -> None:
    # ~9.6 MB of repeated records inflates past the 8 MB limit from a tiny body
    body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", jsonl(chat("x" * 2000)) * 4_800))
    bomb = zlib.compress(body, 9)
    n = len(env.upstream.received)
    assert len(bomb) < 100_000
    refused(env, post_files(env, bomb, {**headers, "Content-Encoding": "deflate"}), 413, "upload_too_large", n)


def test_upload_over_size_limit(env: Env) -> None:
    n = len(env.upstream.received)
    big = jsonl(*[chat("x" * 1000) for _ in range(9000)])  # ~9.3 MB > 8 MB
    with pytest.raises(openai.APIStatusError) as info:
        env.client().files.create(file=("t.jsonl", io.BytesIO(big)), purpose="fine-tune")
    assert info.value.status_code == 413 and info.value.code == "upload_too_large"
    assert env.upstream.received[n:] == []


def test_bad_json_bodies(env: Env) -> None:
    n = len(env.upstream.received)
    r = httpx.post(f"{env.url}/openai/v1/fine_tuning/jobs", content=b"{not json", headers=AUTH)
    refused(env, r, 400, "invalid_json", n)
    r = httpx.post(f"{env.url}/openai/v1/fine_tuning/jobs", json={"model": "m"}, headers=AUTH)
    assert refused(env, r, 400, "invalid_request", n)["param"] == "training_file"


@pytest.fixture()
def big_env(tmp_path: Path, policy: Any, fake_upstream: tuple[FakeOpenAI, str]) -> Iterator[Env]:
    fake, url = fake_upstream
    gw, srv = make_env(tmp_path, policy, fake, url, max_upload_bytes=128 * 1024 * 1024)
    try:
        yield Env(fake, url, gw, srv.url, tmp_path)
    finally:
        srv.stop()


def test_50mb_single_line_refused(big_env: Env) -> None:
    env = big_env
    line = b'{"messages": [{"role": "user", "content": "' + b"a" * (50 * 1024 * 1024) + b'"}]}\n'
    n = len(env.upstream.received)
    with pytest.raises(openai.BadRequestError) as info:
        env.client().files.create(file=("t.jsonl", io.BytesIO(line)), purpose="fine-tune")
    assert info.value.code == "invalid_upload" and "longer than the limit" in info.value.message
    assert env.upstream.received[n:] == []


def test_internal_error_fails_closed(tmp_path: Path, policy: Any, fake_upstream: tuple[FakeOpenAI, str]) -> None:
    fake, url = fake_upstream
    (tmp_path / "not-a-dir").write_text("x")
    gw, srv = make_env(tmp_path, policy, fake, url)
    gw.spool_dir = tmp_path / "not-a-dir"  # the spool cannot be created
    try:
        n = len(fake.received)
        body, headers = form(("purpose", None, b"fine-tune"), ("file", "t.jsonl", GOOD))
        r = httpx.post(f"{srv.url}/openai/v1/files", content=body, headers=headers)
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert "Traceback" not in r.text
        assert fake.received[n:] == []
    finally:
        srv.stop()
    last = json.loads((tmp_path / "audit.jsonl").read_text().splitlines()[-1])["data"]
    assert last["decision"] == "block" and last["reason"] == "internal_error"


def test_unknown_text_field_refused(env: Env) -> None:
    body, headers = form(("purpose", None, b"fine-tune"), ("notes", None, EMAIL.encode()), ("file", "t.jsonl", GOOD))
    n = len(env.upstream.received)
    err = refused(env, post_files(env, body, headers), 400, "invalid_upload", n)
    # v2: the field's name is client text and is not echoed (issue 8: no client text in errors)
    assert "notes" not in err["message"] and EMAIL not in json.dumps(env.audit_entries()[-1])


def test_file_sent_as_text_field_refused(env: Env) -> None:
    body, headers = form(("purpose", None, b"fine-tune"), ("file", None, GOOD))
    n = len(env.upstream.received)
    refused(env, post_files(env, body, headers), 400, "invalid_upload", n)


def test_expires_after_forwarded(env: Env) -> None:
    n = len(env.upstream.received)
    env.client().files.create(
        file=("t.jsonl", io.BytesIO(GOOD)), purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    rec = env.upstream.received[n]
    from gw_upstream import parse_multipart

    parts = parse_multipart(rec.headers["content-type"], rec.body)
    assert parts["expires_after[seconds]"] == (None, b"3600") and parts["file"][1] == GOOD
