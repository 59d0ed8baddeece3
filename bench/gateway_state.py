"""Cost of the gateway's state store and audit log, in process (no HTTP): what each request pays.

- state store (SQLite, WAL, synchronous=FULL): ms per admit / admitted lookup / idempotency
  begin+finish / held-part attach, p50 and p99, one thread;
- held parts: AES-256-GCM seal and open throughput (MB/s) of a 64 MiB part (the OpenAI part limit);
- audit log: ms per durable record() (fsync each, one writer), and entries read at start-up with
  1 vs 50 sealed segments of history (flat by construction: only the active segment is read).

    .venv/bin/python bench/gateway_state.py [--ops 2000] [--no-write]
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway_common import append_results, base_args, machine

from bastion.gateway.audit import AuditLog
from bastion.gateway.state import Admitted, HeldPart, HeldUpload, open_sqlite_store

MiB = 1024 * 1024


def timed(n: int, fn: Callable[[int], object]) -> tuple[float, float]:
    lat = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]


def main() -> None:
    ap = base_args(__doc__ or "")
    ap.add_argument("--ops", type=int, default=2000)
    args = ap.parse_args()
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bastion-bench-state-") as tmp:
        store = open_sqlite_store(Path(tmp) / "state", part_key=secrets.token_bytes(32))
        now = datetime.now(UTC)

        def admit(i: int) -> None:
            store.admit(
                Admitted(
                    "openai",
                    f"file-{i}",
                    "sha256:0123456789abcdef",
                    "allow",
                    "internal",
                    "1" * 64,
                    "2" * 64,
                    100,
                    "bench",
                    "fine-tune",
                    now,
                )
            )

        def lookup(i: int) -> None:
            assert store.admitted("openai", f"file-{i}", client="sha256:0123456789abcdef") is not None

        def idem(i: int) -> None:
            assert store.idempotency_begin("openai:files", f"k{i}", "r").proceed
            store.idempotency_finish("openai:files", f"k{i}", 200, [("content-type", "application/json")], b"{}")

        store.upload_create(
            HeldUpload(
                "upload_bench",
                "openai",
                "anonymous",
                "fine-tune",
                "f.jsonl",
                "text/jsonl",
                0,
                now,
                now + timedelta(hours=1),
            )
        )
        blob = store.parts.put(b"x")

        def part(i: int) -> None:
            store.upload_add_part("upload_bench", HeldPart(f"part_{i}", 1, "0" * 64, blob.handle, now))

        for name, fn in (
            ("admit", admit),
            ("admitted (lookup)", lookup),
            ("idempotency begin + finish", idem),
            ("upload_add_part (row only)", part),
        ):
            p50, p99 = timed(args.ops, fn)
            rows.append(f"| state: {name} | {p50:.3f} / {p99:.3f} ms |")
            print(rows[-1])
        data = secrets.token_bytes(64 * MiB)
        t = time.perf_counter()
        sealed = store.parts.put(data)
        seal = time.perf_counter() - t
        t = time.perf_counter()
        n = sum(len(c) for c in store.parts.read(sealed.handle))
        opened = time.perf_counter() - t
        assert n == len(data)
        rows.append(f"| held part 64 MiB: seal / open | {64 / seal:.0f} / {64 / opened:.0f} MB/s |")
        print(rows[-1])
        store.close()

        async def records(audit: AuditLog, n: int) -> list[float]:
            lat = []
            for i in range(n):
                t = time.perf_counter()
                await audit.record({"decision": "allow", "i": i})
                lat.append((time.perf_counter() - t) * 1000)
            return sorted(lat)

        for history in (1, 50):
            path = Path(tmp) / f"audit-{history}" / "audit.jsonl"
            audit = AuditLog(path, segment_max_entries=200)
            lat = asyncio.run(records(audit, 200 * history))
            audit.close()
            t = time.perf_counter()
            audit = AuditLog(path, segment_max_entries=200)
            open_ms = (time.perf_counter() - t) * 1000
            read = sum(1 for p in audit.segments_read for _ in p.open("rb"))
            audit.close()
            if history == 1:
                rows.append(
                    f"| audit record() (fsync each, sequential) | {statistics.median(lat):.3f} / "
                    f"{lat[int(0.99 * (len(lat) - 1))]:.3f} ms |"
                )
                print(rows[-1])
            rows.append(
                f"| audit start-up with {history} segment(s) of 200 entries | {open_ms:.1f} ms, "
                f"{len(audit.segments_read)} file / {read} entries read |"
            )
            print(rows[-1])
    lines = [
        f"- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {machine()}; `bench/gateway_state.py --ops "
        f"{args.ops}`; one thread, SQLite WAL + synchronous=FULL on the local disk; shared machine",
        "",
        "| operation | p50 / p99 (or throughput) |",
        "|---|---|",
        *rows,
    ]
    if not args.no_write:
        append_results("State store and audit log", lines)


if __name__ == "__main__":
    main()
