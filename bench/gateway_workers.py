"""Uploads/s and latency of `bastion gateway --workers N` (N = 1, 2, 4) against the same local upstream.

Each upload is a POST /openai/v1/files of a JSONL file (chat records, some with an e-mail address that
the policy redacts): scanned, audited (fsync), forwarded. The client (asyncio + httpx, --clients
concurrent uploads, one connection each) runs a bounded loop per N after a warm-up; the upstream
discards the bodies. Client, workers and upstream share the machine's CPUs, so with 2 cores more
workers cannot go beyond what the cores allow: read the numbers with the load average next to them.

    .venv/bin/python bench/gateway_workers.py --uploads 150 --clients 20
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
from gateway_common import append_results, base_args, free_port, machine, server_stack, start_gateway, start_sink, stop


def payload(records: int) -> bytes:
    lines = []
    for i in range(records):
        user = f"please summarise ticket {i}" + (f", reply to user{i}@example.org" if i % 10 == 0 else "")
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": "done " * 20}]
        lines.append(json.dumps({"messages": msgs}))
    return ("\n".join(lines) + "\n").encode()


async def run_phase(url: str, clients: int, total: int, body: bytes, errors: list[str]) -> tuple[list[float], float]:
    lat: list[float] = []
    remaining = total
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=120, headers={"Authorization": "Bearer bench"}) as client:

        async def one() -> None:
            t = time.perf_counter()
            try:
                r = await client.post(url, files={"file": ("train.jsonl", body)}, data={"purpose": "fine-tune"})
            except httpx.HTTPError as exc:
                errors.append(type(exc).__name__)
                return
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                errors.append(f"HTTP {r.status_code}")

        await asyncio.gather(*(one() for _ in range(clients)))  # warm-up: connections, first scans

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await one()

        lat.clear()
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return lat, time.perf_counter() - start


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000 if xs else float("nan")


def main() -> None:
    p = base_args(__doc__ or "")
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--uploads", type=int, default=150, help="uploads per worker count (bounded loop)")
    p.add_argument("--records", type=int, default=200, help="records per uploaded file")
    p.add_argument("--workers", default="1,2,4")
    args = p.parse_args()
    body = payload(args.records)
    results: list[str] = []
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
        up_port = free_port()
        sink = start_sink(up_port)
        try:
            for n in (int(x) for x in args.workers.split(",")):
                work = Path(tmp) / f"w{n}"
                work.mkdir()
                port = free_port()
                gw = start_gateway(work, up_port, port, args=("--workers", str(n), "--replica-id", "bench"))
                errors: list[str] = []
                try:
                    url = f"http://127.0.0.1:{port}/openai/v1/files"
                    lat, wall = asyncio.run(run_phase(url, args.clients, args.uploads, body, errors))
                finally:
                    stop(gw)
                row = (
                    f"| {n} | {len(lat)} | {len(lat) / wall:.1f} | {pct(lat, 0.5):.0f} | {pct(lat, 0.99):.0f} | "
                    f"{len(errors)} |"
                )
                results.append(row)
                print(row, flush=True)
        finally:
            stop(sink)
    lines = [
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}; "
        f"`bench/gateway_workers.py --clients {args.clients} --uploads {args.uploads} --records {args.records}`; "
        f"{len(body) / 1024:.0f} KiB JSONL per upload (every 10th record has an e-mail: redacted); client, gateway "
        f"workers and upstream share the CPUs; 1-min load average {load0:.1f} at start, "
        f"{os.getloadavg()[0]:.1f} at the end (a machine shared with other work); servers run uvicorn with "
        f"{server_stack()}",
        "",
        "| workers | uploads | uploads/s | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
        *results,
    ]
    print("\n".join(lines))
    if not args.no_write:
        append_results("Uploads with 1, 2 and 4 workers (`bastion gateway --workers N`)", lines)


if __name__ == "__main__":
    main()
