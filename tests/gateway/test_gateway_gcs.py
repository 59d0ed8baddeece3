"""Cloud Storage through the gateway with the official ``google-cloud-storage`` client (only its
``api_endpoint`` pointed at the gateway) against a 127.0.0.1 stand-in of the JSON API that stores the
exact bytes it receives (``gw_google.FakeGoogle``)."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import httpx
import pytest
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2.credentials import Credentials
from gw_google import MINTED_TOKEN, FakeGoogle
from gw_support import EMAIL, IBAN, jsonl

from bastion.adapters import get_provider
from bastion.adapters.gcs import ledger
from bastion.gateway.app import Gateway, create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.gateway.serve import ServerThread

MiB = 1024 * 1024
TOKEN = "ya29.client-oauth-token-do-not-log-0123456789"
BUCKET = "bastion-train-eu"


def gemini(user: str, model: str = "ok") -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": user}]}, {"role": "model", "parts": [{"text": model}]}]}


@pytest.fixture(scope="module")
def google() -> Iterator[tuple[FakeGoogle, str]]:
    fake = FakeGoogle()
    with ServerThread(fake.app()) as srv:
        yield fake, srv.url


def _gateway(tmp: Path, policy: Any, url: str, auth: dict[str, Any] | None = None) -> tuple[Gateway, ServerThread]:
    cfg = config_from_mapping(
        {
            "upstreams": {
                "gcs": {"base_url": url, "jurisdiction": "EU", "auth": auth or {"mode": "passthrough"}},
            },
            "gateway": {"state_dir": str(tmp), "spool_dir": str(tmp / "spool"), "max_upload_bytes": 16 * 1024 * 1024},
        }
    )
    gw = create_gateway(cfg, policy, policy_name="gateway-tests.yaml")
    return gw, ServerThread(gw.app).start()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory, policy: Any, google: tuple[FakeGoogle, str]) -> Iterator[Any]:
    _fake, url = google
    gw, srv = _gateway(tmp_path_factory.mktemp("gcs"), policy, url)
    try:
        yield gw, srv.url
    finally:
        srv.stop()


def client(gateway_url: str, token: str | None = TOKEN) -> storage.Client:
    creds = Credentials(token=token) if token else AnonymousCredentials()
    return storage.Client(project="bastion-test", credentials=creds,
                          client_options={"api_endpoint": f"{gateway_url}/gcs"})  # fmt: skip


def write(tmp: Path, name: str, data: bytes) -> Path:
    path = tmp / name
    path.write_bytes(data)
    return path


def big_records(n: int, extra: dict[int, str] | None = None) -> bytes:
    """n Gemini records of ~1 KiB each; record i gets extra[i] in its user text."""
    recs = [gemini(f"question {i} " + "x" * 900 + " " + (extra or {}).get(i, "")) for i in range(n)]
    return jsonl(*recs)


def test_small_clean_object_is_stored_byte_identical(gcs: Any, google: Any, tmp_path: Path) -> None:
    gw, url = gcs
    fake, _ = google
    data = jsonl(gemini("What is the capital of France?", "Paris."), gemini("2+2?", "4"))
    blob = client(url).bucket(BUCKET).blob("clean-small.jsonl")
    blob.upload_from_filename(str(write(tmp_path, "clean-small.jsonl", data)))  # multipart (< 8 MiB)
    assert fake.contents[(BUCKET, "clean-small.jsonl")] == data
    stored = fake.objects[(BUCKET, "clean-small.jsonl")]
    assert blob.generation == int(stored["generation"]) and blob.crc32c == stored["crc32c"]
    # the gateway wrote it with its own resumable session and its own crc32c over what it sent
    last = fake.calls("PUT", "/upload/storage/v1/b/")[-1]
    assert last.headers["x-goog-hash"] == "crc32c=" + base64.b64encode(google_crc32c.Checksum(data).digest()).decode()
    assert last.headers["authorization"] == f"Bearer {TOKEN}"  # passthrough: the client's token re-written
    item = ledger.lookup(gw, BUCKET, "clean-small.jsonl", stored["generation"])
    assert item is not None and item.decision == "allow" and item.records == 2
    assert TOKEN not in (gw.settings.state_dir / "audit.jsonl").read_text()


def test_large_resumable_upload_in_several_chunks(gcs: Any, google: Any, tmp_path: Path) -> None:
    gw, url = gcs
    fake, _ = google
    data = big_records(9000)  # ~8.7 MiB: above the SDK's 8 MiB multipart limit, so resumable, in 1 MiB chunks
    blob = client(url).bucket(BUCKET).blob("clean-large.jsonl", chunk_size=MiB)
    before = len(fake.received)
    blob.upload_from_filename(str(write(tmp_path, "large.jsonl", data)))
    assert fake.contents[(BUCKET, "clean-large.jsonl")] == data
    # nothing went upstream before the last chunk; then the gateway's own session, in 8 MiB chunks
    upstream = fake.received[before:]
    assert [r.method for r in upstream] == ["POST", "PUT", "PUT"]
    assert blob.crc32c == fake.objects[(BUCKET, "clean-large.jsonl")]["crc32c"]  # the SDK's checksum check passed
    chunks = [e for e in _audit(gw) if e.get("event") == "upload_chunk_held"]
    assert len(chunks) == 8  # nine 1 MiB chunks: eight held, the ninth completes the upload


def test_pii_is_redacted_and_hashes_recomputed(gcs: Any, google: Any, tmp_path: Path) -> None:
    gw, url = gcs
    fake, _ = google
    data = jsonl(gemini(f"Mail me at {EMAIL} please"), gemini("clean"))
    blob = client(url).bucket(BUCKET).blob("redacted.jsonl")
    blob.upload_from_filename(str(write(tmp_path, "r.jsonl", data)))  # the SDK puts crc32c in the metadata
    stored = fake.contents[(BUCKET, "redacted.jsonl")]
    assert EMAIL.encode() not in stored and b"clean" in stored
    session = fake.calls("POST", "/upload/storage/v1/b/")[-1]
    assert "crc32c" not in json.loads(session.body) and "md5Hash" not in json.loads(session.body)
    assert blob.crc32c == fake.objects[(BUCKET, "redacted.jsonl")]["crc32c"]  # hash of the redacted bytes
    gen = fake.objects[(BUCKET, "redacted.jsonl")]["generation"]
    assert ledger.lookup(gw, BUCKET, "redacted.jsonl", gen).decision == "redact"  # type: ignore[union-attr]


def test_resumable_redaction_with_checksum_off(gcs: Any, google: Any, tmp_path: Path) -> None:
    _, url = gcs
    fake, _ = google
    data = big_records(9000, {3: f"reach {EMAIL}", 8990: f"or {EMAIL}"})
    blob = client(url).bucket(BUCKET).blob("redacted-large.jsonl", chunk_size=4 * MiB)
    blob.upload_from_filename(str(write(tmp_path, "rl.jsonl", data)), checksum=None)
    stored = fake.contents[(BUCKET, "redacted-large.jsonl")]
    assert EMAIL.encode() not in stored and stored.count(b"\n") == 9000


def test_resumable_redaction_with_sdk_checksum_reports_the_difference(gcs: Any, google: Any, tmp_path: Path) -> None:
    """The SDK compares its crc32c with the stored object's; redaction changed the bytes, so it says so
    (DataCorruption) and deletes the object itself: the gateway never reports a checksum it did not store."""
    _, url = gcs
    fake, _ = google
    data = big_records(9000, {7: f"reach {EMAIL}"})
    blob = client(url).bucket(BUCKET).blob("redacted-checked.jsonl", chunk_size=4 * MiB)
    with pytest.raises(Exception, match=r"(?i)checksum"):
        blob.upload_from_filename(str(write(tmp_path, "rc.jsonl", data)))
    assert (BUCKET, "redacted-checked.jsonl") not in fake.objects  # deleted by the SDK through the gateway


def test_blocked_object_is_never_stored(gcs: Any, google: Any, tmp_path: Path, caplog: Any) -> None:
    gw, url = gcs
    fake, _ = google
    caplog.set_level(logging.DEBUG)
    before = len(fake.received)
    for size, name in ((2, "blocked-small.jsonl"), (9000, "blocked-large.jsonl")):
        data = big_records(size, {size - 1: f"pay to {IBAN}"})
        blob = client(url).bucket(BUCKET).blob(name, chunk_size=4 * MiB if size > 2 else None)
        with pytest.raises(gexc.Forbidden) as err:
            blob.upload_from_filename(str(write(tmp_path, name, data)))
        assert "policy" in str(err.value) and IBAN not in str(err.value)
        assert (BUCKET, name) not in fake.objects
    assert fake.received[before:] == []  # not even a session was opened upstream
    assert IBAN not in caplog.text and IBAN not in (gw.settings.state_dir / "audit.jsonl").read_text()


def test_blocked_record_ends_a_resumable_upload_at_its_chunk(gcs: Any, google: Any, tmp_path: Path) -> None:
    """Chunks are scanned as they arrive: a blocked record in the first 1 MiB refuses that chunk, so the
    client never sends the other eight and nothing reaches Cloud Storage."""
    gw, url = gcs
    fake, _ = google
    before, audit_before = len(fake.received), len(_audit(gw))
    data = big_records(9000, {5: f"pay to {IBAN}"})
    blob = client(url).bucket(BUCKET).blob("blocked-early.jsonl", chunk_size=MiB)
    with pytest.raises(gexc.Forbidden, match="policy"):
        blob.upload_from_filename(str(write(tmp_path, "early.jsonl", data)))
    entries = _audit(gw)[audit_before:]
    chunks = [e for e in entries if e.get("route") == "objects.insert.resumable_chunk"]
    assert len(chunks) == 1 and chunks[0]["decision"] == "block" and chunks[0]["scan"]["chunk_first_byte"] == 0
    assert fake.received[before:] == []


def test_resumable_chunks_scanned_as_they_arrive_match_a_rescan(gcs: Any, google: Any, tmp_path: Path) -> None:
    """Another process (or a restart) loses the live scanner: the last chunk rescans the held chunks."""
    from bastion.adapters.gcs.uploads import live_scans

    gw, url = gcs
    fake, _ = google
    h = {"authorization": f"Bearer {TOKEN}"}
    data = big_records(600, {3: f"mail {EMAIL}"})
    outs = []
    for name, lose in (("live.jsonl", False), ("rescanned.jsonl", True)):
        start = httpx.post(f"{url}/gcs/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "resumable"},
                           json={"name": name}, headers=h)  # fmt: skip
        session = start.headers["location"]
        upload_id = session.rsplit("upload_id=", 1)[1]
        first = httpx.put(session, content=data[:262144], headers={**h, "content-range": "bytes 0-262143/*"})
        assert first.status_code == 308 and live_scans(gw).get(upload_id) is not None
        if lose:
            live_scans(gw).drop(upload_id)
        n = len(data)
        last = httpx.put(session, content=data[262144:], headers={**h, "content-range": f"bytes 262144-{n - 1}/{n}"})
        assert last.status_code == 200, last.text
        outs.append(fake.contents[(BUCKET, name)])
        entry = [e for e in _audit(gw) if e.get("route") == "objects.insert.resumable_chunk"][-1]
        assert entry.get("scanned_as_chunks_arrived", False) is not lose
    assert outs[0] == outs[1] and EMAIL.encode() not in outs[0]


def test_two_chunks_for_one_range_end_the_session(gcs: Any, google: Any) -> None:
    """A chunk for the same range that another replica stored at the same moment: the session is ended."""
    from datetime import UTC, datetime

    from bastion.gateway.state import HeldPart

    gw, url = gcs
    fake, _ = google
    h = {"authorization": f"Bearer {TOKEN}"}
    data = big_records(300)
    start = httpx.post(f"{url}/gcs/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "resumable"},
                       json={"name": "raced.jsonl"}, headers=h)  # fmt: skip
    session = start.headers["location"]
    upload_id = session.rsplit("upload_id=", 1)[1]
    real_parts = gw.state.upload_parts

    def racing(uid: str) -> Any:  # the other replica's chunk lands between our check and our add
        if uid == upload_id and len(real_parts(uid)) == 1:
            blob = gw.state.parts.put(data[:262144])
            gw.state.upload_add_part(uid, HeldPart("chunkrace", blob.size, blob.sha256, blob.handle, datetime.now(UTC)))
        return real_parts(uid)

    gw.state.upload_parts = racing  # type: ignore[method-assign]
    try:
        resp = httpx.put(session, content=data[:262144], headers={**h, "content-range": "bytes 0-262143/*"})
    finally:
        del gw.state.upload_parts
    assert resp.status_code == 409 and "same byte range" in resp.json()["error"]["message"]
    again = httpx.put(session, headers={**h, "content-range": "bytes */*"})
    assert again.status_code == 404 and (BUCKET, "raced.jsonl") not in fake.objects


def test_bad_inputs_get_gcs_shaped_errors(gcs: Any, google: Any, tmp_path: Path) -> None:
    _, url = gcs
    fake, _ = google
    before = len(fake.received)
    h = {"authorization": f"Bearer {TOKEN}"}
    base = f"{url}/gcs/upload/storage/v1/b/{BUCKET}/o"
    good = jsonl(gemini("hi"))
    cases = [
        (httpx.post(base, params={"uploadType": "media", "name": "x.jsonl"}, content=b"not json\n", headers=h), 400),
        (httpx.post(base, params={"uploadType": "media"}, content=b'{"a": 1}\n', headers=h), 400),
        (httpx.post(base, params={"uploadType": "media", "name": "../x"}, content=b'{"a": 1}\n', headers=h), 400),
        (
            httpx.post(
                base,
                params={"uploadType": "media", "name": "i.png"},
                content=b"\x89PNG",
                headers={**h, "content-type": "image/png"},
            ),
            415,
        ),
        (httpx.post(base, params={"uploadType": "multipart"}, content=b"--x--", headers=h), 415),
        (
            httpx.put(
                base,
                params={"uploadType": "resumable", "upload_id": "bst" + "0" * 32},
                content=b"{}",
                headers={**h, "content-range": "bytes 0-1/2"},
            ),
            404,
        ),
        (
            httpx.post(
                base,
                params={"uploadType": "media", "name": "c.jsonl"},
                content=good,
                headers={**h, "x-goog-hash": "crc32c=AAAAAA=="},
            ),
            400,
        ),
    ]
    reasons = []
    for resp, status in cases:
        assert resp.status_code == status, resp.text
        reasons.append(resp.json()["error"]["errors"][0]["reason"])
        err = resp.json()["error"]
        assert err["code"] == status and err["errors"][0]["domain"] == "global" and err["message"]
    assert reasons[-1] == "checksum_mismatch"
    assert fake.received[before:] == []


def test_personal_data_in_object_names_and_metadata_is_refused(gcs: Any, google: Any, tmp_path: Path) -> None:
    gw, url = gcs
    fake, _ = google
    before = len(fake.received)
    data = jsonl(gemini("hi"))
    named = client(url).bucket(BUCKET).blob(f"export-{EMAIL}.jsonl")  # name in the multipart metadata
    with pytest.raises(gexc.GoogleAPICallError) as err:
        named.upload_from_filename(str(write(tmp_path, "n.jsonl", data)))
    assert err.value.code in (400, 403) and EMAIL not in str(err.value)
    tagged = client(url).bucket(BUCKET).blob("tagged.jsonl")
    tagged.metadata = {"owner": EMAIL}
    with pytest.raises(gexc.Forbidden):
        tagged.upload_from_filename(str(write(tmp_path, "t.jsonl", data)))
    h = {"authorization": f"Bearer {TOKEN}"}
    query = {"uploadType": "media", "name": f"{EMAIL}.jsonl"}
    media = httpx.post(f"{url}/gcs/upload/storage/v1/b/{BUCKET}/o", params=query, content=data, headers=h)
    assert media.status_code in (400, 403) and EMAIL not in media.text
    assert fake.received[before:] == []
    assert EMAIL not in (gw.settings.state_dir / "audit.jsonl").read_text()


def test_resumable_session_uri_points_at_the_gateway_and_chunks_resume(gcs: Any, google: Any) -> None:
    _, url = gcs
    fake, _ = google
    h = {"authorization": f"Bearer {TOKEN}"}
    data = big_records(300)
    start = httpx.post(f"{url}/gcs/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "resumable"},
                       json={"name": "manual.jsonl", "contentType": "application/jsonl"}, headers=h)  # fmt: skip
    assert start.status_code == 200
    session = start.headers["location"]
    assert session.startswith(f"{url}/gcs/upload/storage/v1/b/{BUCKET}/o?") and "upload_id=bst" in session
    first = httpx.put(session, content=data[:262144], headers={**h, "content-range": "bytes 0-262143/*"})
    assert first.status_code == 308 and first.headers["range"] == "bytes=0-262143"
    again = httpx.put(session, content=data[:10], headers={**h, "content-range": "bytes 0-9/*"})
    assert again.status_code == 409 and again.json()["error"]["errors"][0]["reason"] == "chunk_out_of_order"
    status = httpx.put(session, headers={**h, "content-range": "bytes */*"})
    assert status.status_code == 308 and status.headers["range"] == "bytes=0-262143"
    assert (BUCKET, "manual.jsonl") not in fake.objects
    n = len(data)
    last = httpx.put(session, content=data[262144:], headers={**h, "content-range": f"bytes 262144-{n - 1}/{n}"})
    assert last.status_code == 200 and last.json()["name"] == "manual.jsonl"
    assert fake.contents[(BUCKET, "manual.jsonl")] == data
    replay = httpx.put(session, headers={**h, "content-range": f"bytes */{n}"})
    assert replay.status_code == 200 and replay.json()["generation"] == last.json()["generation"]


def test_server_side_copies_are_refused(gcs: Any, google: Any) -> None:
    _, url = gcs
    fake, _ = google
    cl = client(url)
    src = cl.bucket(BUCKET).blob("clean-small.jsonl")
    before = len(fake.received)
    with pytest.raises(gexc.Forbidden, match="server-side copies"):
        cl.bucket(BUCKET).copy_blob(src, cl.bucket(BUCKET), "copied.jsonl")
    with pytest.raises(gexc.Forbidden, match="server-side copies"):
        cl.bucket(BUCKET).blob("rewritten.jsonl").rewrite(src)
    with pytest.raises(gexc.Forbidden, match="server-side copies"):
        cl.bucket(BUCKET).blob("composed.jsonl").compose([src, src])
    assert fake.received[before:] == []


def test_xml_api_put(gcs: Any, google: Any) -> None:
    _gw, url = gcs
    fake, _ = google
    data = jsonl(gemini(f"xml {EMAIL}"))
    resp = httpx.put(f"{url}/gcs/{BUCKET}/xml.jsonl", content=data,
                     headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/jsonl"})  # fmt: skip
    assert resp.status_code == 200, resp.text
    stored = fake.objects[(BUCKET, "xml.jsonl")]
    assert (
        resp.headers["x-goog-generation"] == stored["generation"]
        and EMAIL.encode() not in fake.contents[(BUCKET, "xml.jsonl")]
    )
    assert resp.headers["x-goog-hash"].startswith(f"crc32c={stored['crc32c']}")


def test_service_account_key_mints_tokens(tmp_path: Path, policy: Any, google: Any, monkeypatch: Any) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    fake, url = google
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = {"type": "service_account", "project_id": "bastion-test", "private_key_id": "k1",
           "private_key": pem.decode(), "client_email": "bastion@bastion-test.iam.gserviceaccount.com",
           "client_id": "1", "token_uri": f"{url}/token"}  # fmt: skip
    monkeypatch.setenv("BASTION_TEST_SA_KEY", json.dumps(key))
    _gw, srv = _gateway(
        tmp_path,
        policy,
        url,
        {"mode": "replace", "api_key_env": "BASTION_TEST_SA_KEY", "scheme": "google-service-account"},
    )
    fake.token = MINTED_TOKEN
    try:
        data = jsonl(gemini("minted"))
        client(srv.url, token=None).bucket(BUCKET).blob("minted.jsonl").upload_from_filename(
            str(write(tmp_path, "m.jsonl", data))
        )
        assert fake.contents[(BUCKET, "minted.jsonl")] == data
        assert len(fake.calls("POST", "/token")) >= 1
        assert pem.decode() not in (tmp_path / "audit.jsonl").read_text()
    finally:
        fake.token = None
        srv.stop()


def test_hosts_map_to_jurisdictions() -> None:
    spec = get_provider("gcs")
    assert spec.jurisdiction_for("https://storage.europe-west4.rep.googleapis.com") == "EU"
    assert spec.jurisdiction_for("https://europe-west3-storage.googleapis.com") == "EU"
    assert spec.jurisdiction_for("https://us-central1-storage.googleapis.com") == "US"
    assert spec.jurisdiction_for("https://europe-west2-storage.googleapis.com") == "GB"
    assert spec.jurisdiction_for("https://storage.googleapis.com") is None  # the bucket decides: configure it


def _audit(gw: Gateway) -> list[dict[str, Any]]:
    gw.audit.drain()
    path = gw.settings.state_dir / "audit.jsonl"
    return [json.loads(line)["data"] for line in path.read_text().splitlines()]
