"""Gateway memory while streaming a large fine-tune upload (goal: flat, < 256 MB RSS).

Three processes on 127.0.0.1: a streaming upstream sink, the real gateway (`bastion gateway`), and
this client, which streams a generated multipart upload (realistic chat records, one e-mail address
per ~1000 records so redaction happens) and samples the gateway's RSS with psutil every 0.25 s.

    .venv/bin/python bench/gateway_rss.py --size-mb 2048
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from gateway_common import RssSampler, append_results, base_args, free_port, machine, start_gateway, start_sink, stop


def record(i: int) -> bytes:
    user = "Could you explain how the overdraft fee on my account is computed this month? " * 4
    if i % 1000 == 0:
        user += f" Reply to customer{i}@example.org."
    rec = {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant for a retail bank."},
            {"role": "user", "content": user},
            {"role": "assistant", "content": "The fee is computed daily on the negative end-of-day balance. " * 6},
        ]
    }
    return json.dumps(rec).encode() + b"\n"


def block() -> bytes:
    out = bytearray()
    i = 0
    while len(out) < 1024 * 1024:
        out += record(i)
        i += 1
    return bytes(out)


def main() -> None:
    p = base_args(__doc__ or "")
    p.add_argument("--size-mb", type=int, default=2048, help="upload size in MiB (default 2048)")
    args = p.parse_args()
    blk = block()
    repeats = max(1, (args.size_mb * 1024 * 1024) // len(blk))
    boundary = "bench-boundary-7f3a"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="train.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    total = len(head) + repeats * len(blk) + len(tail)

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(repeats):
            yield blk
        yield tail

    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
        up_port, gw_port = free_port(), free_port()
        sink = start_sink(up_port)
        gw = start_gateway(Path(tmp), up_port, gw_port, max_upload_bytes=total + 1024 * 1024)
        try:
            rss = RssSampler(gw.pid)
            rss.start()
            started = time.perf_counter()
            r = httpx.post(
                f"http://127.0.0.1:{gw_port}/openai/v1/files",
                content=body(),
                headers={
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    "Content-Length": str(total),
                    "Authorization": "Bearer bench",
                },
                timeout=httpx.Timeout(3600),
            )
            elapsed = time.perf_counter() - started
            rss.stop()
            if r.status_code != 200:
                raise SystemExit(f"upload failed: {r.status_code} {r.text[:300]}")
            got = r.json()["bytes"]
        finally:
            stop(gw)
            stop(sink)
    mib = 1024 * 1024
    n_records = repeats * blk.count(b"\n")
    lines = [
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}; "
        f"`bench/gateway_rss.py --size-mb {args.size_mb}`",
        f"- upload: {total / mib:.0f} MiB multipart ({n_records} chat records, ~1.2 KB each, "
        f"one e-mail per 1 MiB block redacted); upstream received {got / mib:.0f} MiB (re-framed)",
        rss.line(),
        f"- wall time {elapsed:.0f} s ({total / mib / elapsed:.1f} MiB/s end to end: receive + scan + spool + forward)",
        f"- goal flat and < 256 MiB: {'met' if rss.max < 256 * mib else 'NOT met'}",
    ]
    print("\n".join(lines))
    if not args.no_write:
        append_results("Memory while streaming a large upload", lines)


if __name__ == "__main__":
    main()
