"""aws-chunked decoding and SigV4 verification against AWS's published example (signed chunks).

The vectors are the "Example calculations" of AWS's "Signature Calculations for the Authorization
Header: Transferring Payload in Multiple Chunks (Chunked Upload)" page: 66560 bytes of 'a' in chunks
of 65536 and 1024 bytes, key AKIAIOSFODNN7EXAMPLE, 2013-05-24, us-east-1.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from datetime import UTC, datetime

import pytest
from botocore.credentials import Credentials

from bastion.adapters.aws.body import ObjectBody
from bastion.adapters.aws.sigv4 import AwsKeys, verify_client
from bastion.gateway.errors import Refusal

KEYS = AwsKeys(Credentials("X", "Y"), {"AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}, "us-east-1")
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKS = (
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
)
HEADERS = {
    "host": "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
    "SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    f"x-amz-decoded-content-length;x-amz-storage-class,Signature={SEED}",
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "content-encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
    "content-length": "66824",
}
URL = "https://s3.amazonaws.com/examplebucket/chunkObject.txt"
WHEN = datetime(2013, 5, 24, 0, 1, tzinfo=UTC)


def _body(sigs: tuple[str, ...] = CHUNKS) -> bytes:
    return (
        f"10000;chunk-signature={sigs[0]}\r\n".encode()
        + b"a" * 65536
        + f"\r\n400;chunk-signature={sigs[1]}\r\n".encode()
        + b"a" * 1024
        + f"\r\n0;chunk-signature={sigs[2]}\r\n\r\n".encode()
    )


def test_aws_signed_chunk_example_verifies_and_decodes() -> None:
    sig = verify_client(KEYS, method="PUT", url=URL, headers=HEADERS, service="s3", now=WHEN)
    assert sig.signature == SEED
    body = _body()
    assert len(body) == 66824
    decoder = ObjectBody(HEADERS, sig)
    out = b"".join(decoder.feed(body[i : i + 1000]) for i in range(0, len(body), 1000))
    decoder.finish()
    assert out == b"a" * 66560


def test_a_tampered_chunk_or_seed_is_refused() -> None:
    sig = verify_client(KEYS, method="PUT", url=URL, headers=HEADERS, service="s3", now=WHEN)
    body = bytearray(_body())
    body[200] = ord("b")  # one byte of the first chunk's data
    with pytest.raises(Refusal) as err:
        ObjectBody(HEADERS, sig).feed(bytes(body))
    assert err.value.kind == "SignatureDoesNotMatch"
    bad_seed = dict(HEADERS, authorization=HEADERS["authorization"].replace(SEED, "0" + SEED[1:]))
    with pytest.raises(Refusal) as err:
        verify_client(KEYS, method="PUT", url=URL, headers=bad_seed, service="s3", now=WHEN)
    assert err.value.kind == "SignatureDoesNotMatch"
    with pytest.raises(Refusal) as err:  # replayed a day later
        verify_client(KEYS, method="PUT", url=URL, headers=HEADERS, service="s3", now=datetime(2013, 5, 25, tzinfo=UTC))
    assert err.value.kind == "RequestTimeTooSkewed"


def test_unsigned_trailer_checksum_is_verified() -> None:
    data = b'{"prompt": "p", "completion": "c"}\n' * 100
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    headers = {
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "content-encoding": "aws-chunked",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-trailer": "x-amz-checksum-crc32",
    }
    wire = b"%x\r\n%s\r\n0\r\nx-amz-checksum-crc32:%s\r\n\r\n" % (len(data), data, crc.encode())
    dec = ObjectBody(headers, None)
    assert dec.feed(wire) == data
    dec.finish()
    dec = ObjectBody(headers, None)
    dec.feed(wire.replace(crc.encode(), b"AAAAAA=="))
    with pytest.raises(Refusal) as err:
        dec.finish()
    assert err.value.kind == "BadDigest"
    dec = ObjectBody(headers, None)
    dec.feed(wire[:-30])
    with pytest.raises(Refusal) as err:
        dec.finish()
    assert err.value.kind == "IncompleteBody"


def test_plain_body_payload_hash_and_md5_are_verified() -> None:
    data = b'{"prompt": "p", "completion": "c"}\n'
    md5 = base64.b64encode(hashlib.md5(data).digest()).decode()
    ok = ObjectBody({"x-amz-content-sha256": hashlib.sha256(data).hexdigest(), "content-md5": md5}, None)
    assert ok.feed(data) == data
    ok.finish()
    wrong = ObjectBody({"x-amz-content-sha256": hashlib.sha256(b"other").hexdigest()}, None)
    wrong.feed(data)
    with pytest.raises(Refusal) as err:
        wrong.finish()
    assert err.value.kind == "XAmzContentSHA256Mismatch"
    with pytest.raises(Refusal) as err:
        ObjectBody({"x-amz-content-sha256": "UNSIGNED-PAYLOAD", "content-encoding": "gzip"}, None)
    assert err.value.status == 415
