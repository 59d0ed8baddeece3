"""Latency the gateway adds on a pass-through route (GET /v1/models), vs calling the upstream directly.

Three processes on 127.0.0.1: the upstream, the real gateway (`bastion gateway`, audit log on, fsync
per entry, written off the request path), and this client (asyncio + httpx, keep-alive pools). For
each concurrency level the client runs the same bounded request loop directly against the upstream
and through the gateway, and reports p50/p99 of each and the difference ("added").

    .venv/bin/python bench/gateway_latency.py --clients 200 --requests 20000
    BENCH_EXTRA_PATH=.venvs/gw-uvicorn-standard .venv/bin/python bench/gateway_latency.py   # uvloop + httptools
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from gateway_common import (
    append_results,
    base_args,
    free_port,
    machine,
    server_stack,
    start_gateway,
    start_sink,
    stop,
)


async def run_phase(url: str, clients: int, total: int, errors: list[str]) -> list[float]:
    per = max(1, total // clients)
    lat: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60, headers={"Authorization": "Bearer bench"}) as client:
        # warm the pools
        await asyncio.gather(*(client.get(url) for _ in range(clients)))

        async def worker() -> None:
            for _ in range(per):
                t = time.perf_counter()
                try:
                    r = await client.get(url)
                except httpx.HTTPError as exc:
                    errors.append(type(exc).__name__)
                    continue
                lat.append(time.perf_counter() - t)
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}")

        await asyncio.gather(*(worker() for _ in range(clients)))
    return lat


def _errs(errors: list[str]) -> str:
    if not errors:
        return "0"
    kinds = sorted(set(errors))
    return f"{len(errors)} ({', '.join(kinds)})"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def main() -> None:
    p = base_args(__doc__ or "")
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--requests", type=int, default=20000, help="requests per phase (bounded loop)")
    p.add_argument("--rounds", type=int, default=2, help="alternate direct/gateway phases this many times")
    args = p.parse_args()
    results: list[str] = []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
        up_port, gw_port = free_port(), free_port()
        sink = start_sink(up_port)
        gw = start_gateway(Path(tmp), up_port, gw_port)
        gw_proc = psutil.Process(gw.pid)
        up_proc = psutil.Process(sink.pid)
        try:
            direct_url = f"http://127.0.0.1:{up_port}/v1/models"
            gw_url = f"http://127.0.0.1:{gw_port}/openai/v1/models"
            for clients, total in ((1, min(2000, args.requests)), (args.clients, args.requests)):
                direct: list[float] = []
                via: list[float] = []
                err_direct: list[str] = []
                err_via: list[str] = []
                t_direct = t_via = 0.0
                gw_cpu = up_cpu = 0.0
                for _ in range(args.rounds):
                    t = time.perf_counter()
                    u0 = up_proc.cpu_times()
                    direct += asyncio.run(run_phase(direct_url, clients, total, err_direct))
                    u1 = up_proc.cpu_times()
                    up_cpu += (u1.user - u0.user) + (u1.system - u0.system)
                    t_direct += time.perf_counter() - t
                    t = time.perf_counter()
                    c0 = gw_proc.cpu_times()
                    via += asyncio.run(run_phase(gw_url, clients, total, err_via))
                    c1 = gw_proc.cpu_times()
                    gw_cpu += (c1.user - c0.user) + (c1.system - c0.system)
                    t_via += time.perf_counter() - t
                d50, d99, g50, g99 = pct(direct, 0.5), pct(direct, 0.99), pct(via, 0.5), pct(via, 0.99)
                results.append(
                    f"| {clients} | {len(via)} | {d50:.2f} / {d99:.2f} | {g50:.2f} / {g99:.2f} | "
                    f"**{g50 - d50:.2f} / {g99 - d99:.2f}** | {len(direct) / t_direct:.0f} / {len(via) / t_via:.0f} | "
                    f"{_errs(err_direct)} / {_errs(err_via)} | "
                    f"{1000 * up_cpu / max(1, len(direct)):.2f} / {1000 * gw_cpu / max(1, len(via)):.2f} |"
                )
                print(results[-1], f"(mean added {1000 * (statistics.mean(via) - statistics.mean(direct)):.2f} ms)")
        finally:
            stop(gw)
            stop(sink)
    lines = [
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}; "
        f"`bench/gateway_latency.py --clients {args.clients} --requests {args.requests} --rounds {args.rounds}`; "
        "client, gateway and upstream are separate processes sharing the same CPUs; "
        f"1-min load average at start {load:.1f} (shared machine); servers run uvicorn with {server_stack()}",
        "",
        "| concurrent clients | requests via gateway | direct p50 / p99 ms | via gateway p50 / p99 ms "
        "| added p50 / p99 ms | req/s direct / via | errors direct / via | CPU ms/request: upstream / gateway |",
        "|---|---|---|---|---|---|---|---|",
        *results,
    ]
    print("\n".join(lines))
    if not args.no_write:
        append_results("Pass-through latency (GET /v1/models)", lines)


if __name__ == "__main__":
    main()
