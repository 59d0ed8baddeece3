"""Issue 16's parser crashes, end to end through the gateway: clean 400 refusals, nothing forwarded."""

from __future__ import annotations

from typing import Any

import httpx
from gw_support import CLIENT_TOKEN, Env, chat, jsonl

AUTH = {"Authorization": f"Bearer {CLIENT_TOKEN}"}


def _upload(env: Env, data: bytes, boundary: str) -> httpx.Response:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", **AUTH}
    return httpx.post(f"{env.url}/openai/v1/files", content=body, headers=headers, timeout=60)


def _refused(env: Env, r: httpx.Response, n: int) -> dict[str, Any]:
    assert r.status_code == 400, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == "invalid_upload"
    assert env.upstream.received[n:] == [], "a refused upload reached the upstream"
    return err


def test_a_boundary_longer_than_the_parser_takes_is_a_400(env: Env) -> None:
    n = len(env.upstream.received)
    err = _refused(env, _upload(env, jsonl(chat("hi")), "b" * 300), n)
    assert "boundary is 300 bytes long" in err["message"]


def test_an_integer_of_4301_digits_in_an_upload_is_a_400(env: Env) -> None:
    n = len(env.upstream.received)
    data = jsonl(chat("hi")) + b'{"n": ' + b"9" * 4301 + b"}\n"
    err = _refused(env, _upload(env, data, "XyZ123"), n)
    assert "record 2 is not accepted: an integer with 4301 digits" in err["message"] and "9999" not in err["message"]
