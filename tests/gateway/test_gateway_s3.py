"""S3 through the gateway: boto3 (endpoint_url = the gateway, default checksum settings, HTTPS) -> moto.

Upstream: moto's server mode behind a botocore SigV4 check of the gateway's own signature
(tests/gateway/aws_support.py). What S3 holds is read back straight from moto.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3.s3.transfer
import httpx
import pytest
from aws_support import (
    ENV,
    OTHER_KEY_ID,
    MotoUpstream,
    ResolveVirtualHosts,
    aws_block,
    s3_client,
    self_signed,
)
from botocore.exceptions import ClientError

from bastion.adapters.s3.steps import PART_SIZE, ledger_ref
from bastion.gateway.app import Gateway, create_gateway
from bastion.gateway.config import config_from_mapping
from bastion.gateway.serve import ServerThread

BUCKET = "training-data"
EMAIL = "jane.roe@example.org"
IBAN = "DE89370400440532013000"
MiB = 1024 * 1024


class Rig:
    def __init__(self, moto: MotoUpstream, gw: Gateway, url: str, cafile: Path) -> None:
        self.moto, self.gw, self.url, self.cafile = moto, gw, url, cafile
        self.s3 = moto.direct()

    def client(self, **kw: Any) -> Any:
        return s3_client(f"{self.url}/s3", self.cafile, **kw)

    def stored(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def exists(self, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=BUCKET, Key=key)
        except ClientError:
            return False
        return True

    def audit(self) -> list[dict[str, Any]]:
        self.gw.audit.drain()
        path = self.gw.settings.audit_path
        return [json.loads(line)["data"] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, policy: Any) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("s3gw")
    mp = pytest.MonkeyPatch()
    for k, v in ENV.items():
        mp.setenv(k, v)
    moto = MotoUpstream().start()
    moto.direct().create_bucket(Bucket=BUCKET)
    cert, key = self_signed(tmp)
    cfg = config_from_mapping(
        {
            "upstreams": {"s3": {"base_url": moto.url, "region": "us-east-1", "aws": aws_block()}},
            "gateway": {"state_dir": str(tmp / "state"), "max_line_bytes": 4 * MiB},
        }
    )
    gw = create_gateway(cfg, policy, policy_name="gateway-tests.yaml")
    srv = ServerThread(gw.app, ssl_certfile=str(cert), ssl_keyfile=str(key)).start()
    try:
        yield Rig(moto, gw, f"https://127.0.0.1:{srv.port}", cert)
    finally:
        srv.stop()
        moto.stop()
        mp.undo()
    assert not moto.check.bad, moto.check.bad


def lines(n: int, extra: str = "", width: int = 0) -> bytes:
    pad = "x" * width
    return b"".join(
        json.dumps({"prompt": f"q{i} {extra if i % 7 == 3 else ''} {pad}", "completion": f"a{i}"}).encode() + b"\n"
        for i in range(n)
    )


def test_clean_object_is_stored_byte_identical(rig: Rig) -> None:
    data = lines(50)
    out = rig.client().put_object(Bucket=BUCKET, Key="clean/train.jsonl", Body=data)
    assert rig.stored("clean/train.jsonl") == data
    assert out["ETag"] == rig.s3.head_object(Bucket=BUCKET, Key="clean/train.jsonl")["ETag"]
    # the gateway-held ledger names this version of the object
    item = rig.gw.state.admitted("s3", ledger_ref(f"s3://{BUCKET}/clean/train.jsonl", out["ETag"]))
    assert item is not None and item.decision == "allow"
    assert item.output_sha256 == hashlib.sha256(data).hexdigest()
    # boto3's default over HTTPS: aws-chunked + unsigned trailer; none of it reached S3 (SignatureCheck.bad)
    assert ("PUT", f"/{BUCKET}/clean/train.jsonl", hashlib.sha256(data).hexdigest()) in rig.moto.check.seen


def test_pii_is_redacted_before_it_is_stored(rig: Rig) -> None:
    data = lines(20, extra=f"mail {EMAIL}")
    out = rig.client().put_object(Bucket=BUCKET, Key="pii/train.jsonl", Body=data)
    stored = rig.stored("pii/train.jsonl")
    assert EMAIL.encode() not in stored and stored != data
    assert len(stored.splitlines()) == 20
    assert all(json.loads(line)["prompt"].startswith("q") for line in stored.splitlines())
    item = rig.gw.state.admitted("s3", ledger_ref(f"s3://{BUCKET}/pii/train.jsonl", out["ETag"]))
    assert item is not None and item.decision == "redact"
    assert EMAIL not in json.dumps(rig.audit())


def test_blocked_object_is_never_stored(rig: Rig) -> None:
    with pytest.raises(ClientError) as err:
        rig.client().put_object(Bucket=BUCKET, Key="blocked/train.jsonl", Body=lines(10, extra=f"iban {IBAN}"))
    assert err.value.response["Error"]["Code"] == "policy_block"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert not rig.exists("blocked/train.jsonl")
    assert IBAN not in json.dumps(rig.audit())


def test_multipart_upload_file_redacted_with_valid_part_sizes(rig: Rig, tmp_path: Path) -> None:
    # ~40 MiB in 5 MiB client parts (the smallest S3 allows); a line spans every part boundary
    data = lines(40 * MiB // 1100, extra=f"call {EMAIL}", width=1024)
    src = tmp_path / "big.jsonl"
    src.write_bytes(data)
    cfg = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    rig.client().upload_file(str(src), BUCKET, "big/train.jsonl", Config=cfg)
    held = [
        e
        for e in rig.audit()
        if e.get("event") == "upload_part_held" and e["ids"]["target"] == f"{BUCKET}/big/train.jsonl"
    ]
    assert len(held) >= 8  # several client parts went through the gateway
    stored = rig.stored("big/train.jsonl")
    assert EMAIL.encode() not in stored and len(stored.splitlines()) == len(data.splitlines())
    assert len(stored) < len(data)  # redaction shrank it: the gateway re-chunked into parts of its own
    head = rig.s3.head_object(Bucket=BUCKET, Key="big/train.jsonl", PartNumber=1)
    assert head["PartsCount"] == -(-len(stored) // PART_SIZE) >= 2
    assert head["ContentLength"] == PART_SIZE  # every part but the last is PART_SIZE (>= 5 MiB)


def test_clean_multipart_is_byte_identical(rig: Rig, tmp_path: Path) -> None:
    data = lines(12 * MiB // 600, width=500)
    src = tmp_path / "clean.jsonl"
    src.write_bytes(data)
    cfg = boto3.s3.transfer.TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    rig.client().upload_file(str(src), BUCKET, "clean/multi.jsonl", Config=cfg)
    assert rig.stored("clean/multi.jsonl") == data


def test_virtual_hosted_addressing(rig: Rig) -> None:
    data = lines(5)
    port = rig.url.rsplit(":", 1)[1]
    with ResolveVirtualHosts():
        client = s3_client(f"https://gw.test:{port}/s3", rig.cafile, style="virtual")
        client.put_object(Bucket=BUCKET, Key="virtual/train.jsonl", Body=data)
    assert rig.stored("virtual/train.jsonl") == data


def test_tampered_signature_is_refused(rig: Rig) -> None:
    client = rig.client()

    def tamper(request: Any, **_: Any) -> None:
        auth = request.headers["Authorization"]
        auth = auth.decode() if isinstance(auth, bytes) else auth
        head, sig = auth.rsplit("Signature=", 1)
        request.headers["Authorization"] = f"{head}Signature={'0' if sig[0] != '0' else '1'}{sig[1:]}"

    client.meta.events.register("before-send.s3.PutObject", tamper)
    with pytest.raises(ClientError) as err:
        client.put_object(Bucket=BUCKET, Key="tampered/train.jsonl", Body=lines(3))
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert not rig.exists("tampered/train.jsonl")


def test_wrong_secret_and_unknown_key_are_refused(rig: Rig) -> None:
    with pytest.raises(ClientError) as err:
        rig.client(secret="not-the-secret").put_object(Bucket=BUCKET, Key="x/a.jsonl", Body=lines(2))
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as err:
        rig.client(key_id=OTHER_KEY_ID).put_object(Bucket=BUCKET, Key="x/a.jsonl", Body=lines(2))
    assert err.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert not rig.exists("x/a.jsonl")


def test_copy_is_refused(rig: Rig) -> None:
    rig.client().put_object(Bucket=BUCKET, Key="copy/src.jsonl", Body=lines(3))
    with pytest.raises(ClientError) as err:
        rig.client().copy_object(
            Bucket=BUCKET, Key="copy/dst.jsonl", CopySource={"Bucket": BUCKET, "Key": "copy/src.jsonl"}
        )
    assert err.value.response["Error"]["Code"] == "copy_not_allowed"
    assert not rig.exists("copy/dst.jsonl")


def test_not_jsonl_or_not_a_bedrock_record_is_refused(rig: Rig) -> None:
    with pytest.raises(ClientError) as err:
        rig.client().put_object(Bucket=BUCKET, Key="bad/a.jsonl", Body=b'{"text": "no such format"}\n')
    assert err.value.response["Error"]["Code"] == "invalid_record"
    with pytest.raises(ClientError) as err:
        rig.client().put_object(Bucket=BUCKET, Key="bad/b.jsonl", Body=b"\x89PNG\r\n\x1a\n binary")
    assert err.value.response["Error"]["Code"] in ("invalid_upload", "invalid_record")
    assert not rig.exists("bad/a.jsonl") and not rig.exists("bad/b.jsonl")


def test_complete_with_an_etag_the_gateway_did_not_give_is_refused(rig: Rig) -> None:
    client = rig.client()
    up = client.create_multipart_upload(Bucket=BUCKET, Key="mp/forged.jsonl")
    client.upload_part(Bucket=BUCKET, Key="mp/forged.jsonl", UploadId=up["UploadId"], PartNumber=1, Body=lines(3))
    with pytest.raises(ClientError) as err:
        client.complete_multipart_upload(
            Bucket=BUCKET,
            Key="mp/forged.jsonl",
            UploadId=up["UploadId"],
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"0123456789abcdef0123456789abcdef"'}]},
        )
    assert err.value.response["Error"]["Code"] == "InvalidPart"
    client.abort_multipart_upload(Bucket=BUCKET, Key="mp/forged.jsonl", UploadId=up["UploadId"])
    assert not rig.exists("mp/forged.jsonl")


def _signed_chunk_put(rig: Rig, key: str, data: bytes, *, tamper: bool = False) -> httpx.Response:
    """A PUT in the signed-chunk form (STREAMING-AWS4-HMAC-SHA256-PAYLOAD), which boto3 does not send."""
    from aws_support import CLIENT_KEY_ID, CLIENT_SECRET
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from bastion.adapters.aws.sigv4 import AwsKeys, _GatewaySigner, verify_client

    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)] + [b""]
    length = sum(len(f"{len(c):x};chunk-signature=") + 64 + 2 + len(c) + 2 for c in chunks)
    url = f"{rig.url}/s3/{BUCKET}/{key}"
    headers = {
        "host": url.split("/")[2],
        "content-encoding": "aws-chunked",
        "content-length": str(length),
        "x-amz-decoded-content-length": str(len(data)),
    }
    req = AWSRequest(method="PUT", url=url, headers=headers)
    req.context["bastion_payload_sha256"] = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    _GatewaySigner(Credentials(CLIENT_KEY_ID, CLIENT_SECRET), "s3", "us-east-1").add_auth(req)
    sent = {k.lower(): v for k, v in req.headers.items()}
    sig = verify_client(
        AwsKeys(None, {CLIENT_KEY_ID: CLIENT_SECRET}, "us-east-1"),  # type: ignore[arg-type]
        method="PUT",
        url=url,
        headers=sent,
        service="s3",
    )
    body = bytearray()
    previous = sig.signature
    for chunk in chunks:
        previous = sig.chunk_signature(previous, hashlib.sha256(chunk).hexdigest())
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    if tamper:
        body[100] ^= 1
    return httpx.put(url, content=bytes(body), headers=sent, verify=str(rig.cafile), timeout=60)


def test_signed_chunk_upload_is_verified_and_stored(rig: Rig) -> None:
    data = lines(100)
    r = _signed_chunk_put(rig, "signed/train.jsonl", data)
    assert r.status_code == 200, r.text
    assert rig.stored("signed/train.jsonl") == data
    r = _signed_chunk_put(rig, "signed/tampered.jsonl", data, tamper=True)
    assert r.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.content
    assert not rig.exists("signed/tampered.jsonl")


def test_plain_http_client_signed_payload_and_header_checksum(rig: Rig) -> None:
    # over plain HTTP botocore signs the payload hash and sends the CRC32 as a header (no aws-chunked)
    with ServerThread(rig.gw.app, lifespan="off") as plain:
        client = s3_client(f"{plain.url}/s3", rig.cafile)
        seen: dict[str, str] = {}

        def note(request: Any, **_: Any) -> None:
            for k, v in request.headers.items():
                seen[k.lower()] = v.decode() if isinstance(v, bytes) else v

        client.meta.events.register("before-send.s3.PutObject", note)
        data = lines(10)
        client.put_object(Bucket=BUCKET, Key="http/train.jsonl", Body=data)
        assert "x-amz-checksum-crc32" in seen and seen["x-amz-content-sha256"] == hashlib.sha256(data).hexdigest()
        assert rig.stored("http/train.jsonl") == data
        # a wrong header checksum is refused (botocore keeps a checksum the caller set)
        with pytest.raises(ClientError) as err:
            client.put_object(Bucket=BUCKET, Key="http/bad.jsonl", Body=data, ChecksumCRC32="AAAAAA==")
        assert err.value.response["Error"]["Code"] == "BadDigest"
        assert not rig.exists("http/bad.jsonl")
