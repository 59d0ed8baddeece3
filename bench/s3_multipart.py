"""Gateway memory during a large S3 multipart upload (boto3 ``upload_fileobj`` -> gateway -> S3 sink).

Three processes on 127.0.0.1: a streaming S3 stand-in (multipart create / part / complete; bodies are
hashed and dropped, never kept), the real gateway app under TLS (so boto3 uses its HTTPS defaults:
CRC32 trailer checksums in ``aws-chunked`` bodies), and this client. The client streams generated
Bedrock Claude records (``system`` + ``messages``, the chat text of ``gateway_rss.py``; one e-mail
address per 1 MiB block, so redaction happens) in 16 MiB parts and samples the gateway's RSS with
psutil every 0.25 s. The gateway holds the parts (sealed on disk), scans them at
CompleteMultipartUpload, and writes its own multipart upload upstream.

    .venv/bin/python bench/s3_multipart.py --size-mb 2048
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway_common import (
    REPO,
    RssSampler,
    append_results,
    base_args,
    free_port,
    machine,
    server_env,
    stop,
    wait_port,
)

MiB = 1024 * 1024
KEY_ID, SECRET = "AKIABENCHCLIENT00001", "bench-client-secret-not-a-real-key-00001"


def sink_app():  # type: ignore[no-untyped-def]
    """A streaming S3 stand-in: multipart create / upload part / complete; counts and hashes bytes."""
    import secrets

    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    sizes: dict[str, int] = {}

    async def obj(request: Request) -> Response:
        q = request.query_params
        if request.method == "POST" and "uploads" in q:
            uid = secrets.token_hex(16)
            sizes[uid] = 0
            body = f"<InitiateMultipartUploadResult><UploadId>{uid}</UploadId></InitiateMultipartUploadResult>"
            return Response(body, media_type="application/xml")
        h = hashlib.md5()
        n = 0
        async for chunk in request.stream():
            h.update(chunk)
            n += len(chunk)
        if request.method == "PUT" and "partNumber" in q:
            sizes[q["uploadId"]] += n
            return Response(b"", headers={"ETag": f'"{h.hexdigest()}"'})
        if request.method == "POST" and "uploadId" in q:
            total = sizes.pop(q["uploadId"])
            etag = f'"{hashlib.md5(str(total).encode()).hexdigest()}-1"'
            print(f"SINK-RECEIVED {total}", flush=True)
            return Response(
                f"<CompleteMultipartUploadResult><ETag>{etag}</ETag></CompleteMultipartUploadResult>",
                media_type="application/xml",
            )
        return Response(b"", status_code=400)

    return Starlette(routes=[Route("/{path:path}", obj, methods=["PUT", "POST", "DELETE", "HEAD"])])


class Records(io.RawIOBase):
    """A readable stream of ``size`` bytes of JSONL records, generated as it is read (no file, no RAM)."""

    def __init__(self, size: int) -> None:
        lines = []
        n = 0
        while n < MiB:  # the chat text of bench/gateway_rss.py, in the Claude (system + messages) format
            i = len(lines)
            user = "Could you explain how the overdraft fee on my account is computed this month? " * 4
            if i == 0:
                user += f" Reply to customer{i}@example.org."
            rec = {
                "system": "You are a helpful assistant for a retail bank.",
                "messages": [
                    {"role": "user", "content": user},
                    {
                        "role": "assistant",
                        "content": "The fee is computed daily on the negative end-of-day balance. " * 6,
                    },
                ],
            }
            lines.append(json.dumps(rec).encode() + b"\n")
            n += len(lines[-1])
        self.block = b"".join(lines)
        self.repeats = max(1, size // len(self.block))
        self.size = self.repeats * len(self.block)
        self.records = self.repeats * len(lines)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        left = self.size - self.pos
        n = min(len(b), left)
        off = self.pos % len(self.block)
        out = 0
        while out < n:
            take = min(n - out, len(self.block) - off)
            b[out : out + take] = self.block[off : off + take]
            out += take
            off = 0
        self.pos += n
        return n


def start_sink(port: int, log: Path) -> subprocess.Popen[bytes]:
    code = (
        f"import sys, uvicorn; sys.path.insert(0, {str(REPO / 'bench')!r}); import s3_multipart as s; "
        f"uvicorn.run(s.sink_app(), host='127.0.0.1', port={port}, log_level='warning', access_log=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env=server_env(), stdout=log.open("wb"))
    wait_port(port)
    return proc


def start_gateway(tmp: Path, sink_port: int, port: int, max_bytes: int) -> subprocess.Popen[bytes]:
    import yaml

    sys.path.insert(0, str(REPO / "tests" / "gateway"))
    from aws_support import self_signed  # the tests' throw-away certificate helper
    from gateway_common import BENCH_POLICY

    cert, key = self_signed(tmp)
    (tmp / "policy.yaml").write_text(BENCH_POLICY)
    cfg = {
        "upstreams": {
            "s3": {
                "base_url": f"http://127.0.0.1:{sink_port}",
                "region": "us-east-1",
                "aws": {
                    "access_key_id_env": "BENCH_GW_AK",
                    "secret_access_key_env": "BENCH_GW_SK",
                    "clients": {KEY_ID: "BENCH_CLIENT_SK"},
                },
            }
        },
        "gateway": {"state_dir": str(tmp / "state"), "max_upload_bytes": max_bytes, "max_line_bytes": 4 * MiB},
    }
    (tmp / "upstreams.yaml").write_text(yaml.safe_dump(cfg))
    code = (
        "import uvicorn; from bastion.gateway.config import load_config; from bastion.policies import load_policy; "
        "from bastion.gateway.app import create_app; "
        f"app = create_app(load_config({str(tmp / 'upstreams.yaml')!r}), load_policy({str(tmp / 'policy.yaml')!r})); "
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='warning', access_log=False, "
        f"ssl_certfile={str(cert)!r}, ssl_keyfile={str(key)!r})"
    )
    env = {
        **server_env(),
        "BENCH_GW_AK": "AKIABENCHGATEWAY0001",
        "BENCH_GW_SK": "bench-gw-secret",
        "BENCH_CLIENT_SK": SECRET,
    }
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    wait_port(port)
    return proc


def main() -> None:
    import boto3
    from boto3.s3.transfer import TransferConfig
    from botocore.config import Config

    p = base_args(__doc__ or "")
    p.add_argument("--size-mb", type=int, default=2048, help="object size in MiB (default 2048)")
    p.add_argument("--part-mb", type=int, default=16, help="client part size in MiB (default 16)")
    args = p.parse_args()
    src = Records(args.size_mb * MiB)
    with tempfile.TemporaryDirectory(prefix="bastion-bench-s3-") as tmp_s:
        tmp = Path(tmp_s)
        sink_port, gw_port = free_port(), free_port()
        sink = start_sink(sink_port, tmp / "sink.log")
        gw = start_gateway(tmp, sink_port, gw_port, src.size + 64 * MiB)
        try:
            rss = RssSampler(gw.pid)
            rss.start()
            client = boto3.client(
                "s3",
                endpoint_url=f"https://127.0.0.1:{gw_port}/s3",
                aws_access_key_id=KEY_ID,
                aws_secret_access_key=SECRET,
                region_name="us-east-1",
                verify=str(tmp / "cert.pem"),
                config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}, read_timeout=3600),
            )
            part = args.part_mb * MiB
            started = time.perf_counter()
            client.upload_fileobj(
                io.BufferedReader(src, buffer_size=MiB),
                "bench-bucket",
                "train.jsonl",
                Config=TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=4),
            )
            elapsed = time.perf_counter() - started
            rss.stop()
        finally:
            stop(gw)
            stop(sink)
        received = [line for line in (tmp / "sink.log").read_text().splitlines() if line.startswith("SINK-RECEIVED")]
        got = int(received[-1].split()[1]) if received else -1
    lines = [
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}; "
        f"`bench/s3_multipart.py --size-mb {args.size_mb} --part-mb {args.part_mb}`",
        f"- object: {src.size / MiB:.0f} MiB of Bedrock Claude records ({src.records} records, one e-mail "
        f"per 1 MiB block redacted), boto3 `upload_fileobj` over HTTPS (default checksums: aws-chunked + CRC32 "
        f"trailer) in {args.part_mb} MiB parts, 4 threads; the S3 stand-in received {got / MiB:.0f} MiB in the "
        "gateway's own 16 MiB parts",
        rss.line(),
        f"- wall time {elapsed:.0f} s ({src.size / MiB / elapsed:.1f} MiB/s end to end: receive + de-chunk + hold "
        "parts sealed + scan at Complete + spool + re-upload)",
        f"- goal flat and < 256 MiB: {'met' if rss.max < 256 * MiB else 'NOT met'}",
    ]
    print("\n".join(lines))
    if not args.no_write:
        append_results("S3 multipart upload: memory (Bedrock data plane)", lines)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
