"""S3 / Bedrock test rig: moto in server mode as the AWS upstream, the gateway under TLS, boto3 clients.

The upstream is **moto's server mode** (``ThreadedMotoServer``: real S3 and Bedrock wire protocols,
exact bytes stored), wrapped in a WSGI check that recomputes the SigV4 signature of every request the
gateway sends with botocore and the gateway's credentials (moto itself does not verify signatures).
The gateway runs under TLS (a throw-away self-signed certificate) so that boto3 uses its defaults
over HTTPS: CRC32 checksums in an ``aws-chunked`` body with ``STREAMING-UNSIGNED-PAYLOAD-TRAILER``.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import gw_support
from botocore.config import Config

from bastion.adapters.aws.sigv4 import AwsKeys, verify_client
from bastion.gateway.errors import Refusal

GW_KEY_ID = "AKIAGATEWAYHELD00001"
GW_SECRET = "gateway-held-secret-key-never-logged-0001"
CLIENT_KEY_ID = "AKIACLIENTTRAINER001"
CLIENT_SECRET = "client-secret-key-of-the-trainer-000001"
OTHER_KEY_ID = "AKIAUNKNOWNCLIENT001"
DIRECT_KEY_ID = "AKIATESTDIRECTACCESS"  # the test itself, reading and writing moto behind the gateway's back
DIRECT_SECRET = "direct-test-access-secret-00000000001"
VIRTUAL_HOST = "gw.test"
ENV = {"BASTION_TEST_GW_AK": GW_KEY_ID, "BASTION_TEST_GW_SK": GW_SECRET, "BASTION_TEST_CLIENT_SK": CLIENT_SECRET}


def aws_block() -> dict[str, Any]:
    return {
        "access_key_id_env": "BASTION_TEST_GW_AK",
        "secret_access_key_env": "BASTION_TEST_GW_SK",
        "clients": {CLIENT_KEY_ID: "BASTION_TEST_CLIENT_SK"},
        "virtual_host": VIRTUAL_HOST,
    }


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1, localhost and the virtual-hosted S3 names under VIRTUAL_HOST."""
    return gw_support.self_signed(tmp, ["localhost", VIRTUAL_HOST, f"*.{VIRTUAL_HOST}"], common_name="bastion-test")


@dataclass
class SignatureCheck:
    """WSGI middleware in front of moto: every request must carry the gateway's valid SigV4 signature."""

    app: Any
    region: str = "us-east-1"
    seen: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, payload hash)
    bad: list[str] = field(default_factory=list)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = environ["CONTENT_TYPE"]
        if environ.get("CONTENT_LENGTH"):
            headers["content-length"] = environ["CONTENT_LENGTH"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        import io

        environ["wsgi.input"] = io.BytesIO(body)
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        path, _, query = raw_path.partition("?")
        query = query or environ.get("QUERY_STRING", "")
        url = f"http://{headers.get('host', '')}{path}" + (f"?{query}" if query else "")
        auth = headers.get("authorization", "")
        service = auth.split("/")[3] if auth.count("/") >= 4 else "s3"
        keys = AwsKeys(
            credentials=None,  # type: ignore[arg-type]
            clients={GW_KEY_ID: GW_SECRET, DIRECT_KEY_ID: DIRECT_SECRET},
            region=self.region,
        )
        try:
            signed = verify_client(
                keys, method=environ["REQUEST_METHOD"], url=url, headers=headers, service=service, body=body
            )
            if service == "s3" and headers.get("x-amz-content-sha256") not in (None, "UNSIGNED-PAYLOAD"):
                import hashlib

                assert hashlib.sha256(body).hexdigest() == headers["x-amz-content-sha256"], "payload hash"
        except (Refusal, AssertionError) as exc:
            self.bad.append(f"{environ['REQUEST_METHOD']} {path}: {getattr(exc, 'kind', exc)}")
            start_response("403 Forbidden", [("Content-Type", "application/xml")])
            return [b"<Error><Code>SignatureDoesNotMatch</Code><Message>stand-in check</Message></Error>"]
        forbidden = [h for h in headers if h.startswith("x-amz-checksum") or h in ("content-md5", "x-amz-trailer")]
        if signed.access_key_id != GW_KEY_ID:
            return self.app(environ, start_response)
        if environ["REQUEST_METHOD"] in ("PUT", "POST") and (
            forbidden or "aws-chunked" in headers.get("content-encoding", "")
        ):
            self.bad.append(f"{path}: client checksum/chunked header forwarded: {forbidden}")
        self.seen.append((environ["REQUEST_METHOD"], path, headers.get("x-amz-content-sha256", "")))
        return self.app(environ, start_response)


class MotoUpstream:
    """moto's server (S3 + Bedrock) on 127.0.0.1 behind :class:`SignatureCheck`."""

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.check = SignatureCheck(DomainDispatcherApplication(create_backend_app))
        self.server = make_server("127.0.0.1", 0, self.check, threaded=True)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoUpstream:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()

    def direct(self, service: str = "s3") -> Any:
        """A boto3 client straight to moto (the test's view of what S3 holds), signed with the gateway's key."""
        return boto3.client(
            service,
            endpoint_url=self.url,
            aws_access_key_id=DIRECT_KEY_ID,
            aws_secret_access_key=DIRECT_SECRET,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}),
        )


def s3_client(
    gw_url: str,
    cafile: Path,
    *,
    key_id: str = CLIENT_KEY_ID,
    secret: str = CLIENT_SECRET,
    style: str = "path",
    **config: Any,
) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=gw_url,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        verify=str(cafile),
        config=Config(s3={"addressing_style": style}, retries={"max_attempts": 1}, **config),
    )


@dataclass
class ResolveVirtualHosts:
    """Make ``<bucket>.gw.test`` resolve to 127.0.0.1 inside the test process (virtual-hosted requests)."""

    original: Any = None

    def __enter__(self) -> ResolveVirtualHosts:
        self.original = socket.getaddrinfo

        def fake(host: Any, *args: Any, **kw: Any) -> Any:
            if isinstance(host, str) and (host == VIRTUAL_HOST or host.endswith("." + VIRTUAL_HOST)):
                host = "127.0.0.1"
            return self.original(host, *args, **kw)

        socket.getaddrinfo = fake
        return self

    def __exit__(self, *exc: object) -> None:
        socket.getaddrinfo = self.original


def iter_lines(n: int, text: str) -> Iterator[bytes]:
    import json

    for i in range(n):
        yield json.dumps({"prompt": f"question {i} {text}", "completion": f"answer {i}"}).encode() + b"\n"
