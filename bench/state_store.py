"""State store latency per admitted file: PostgreSQL (replicas) vs SQLite (one machine), same run, side by side.

    python bench/state_store.py [--ops 2000] [--rounds 4] [--threads 8] [--pg postgresql://postgres@127.0.0.1:5432/postgres]

What the gateway adds to a request through its state store, per operation:
- admit + lookup: ``admit()`` of an uploaded file, then ``admitted(..., client=...)`` as the job that
  names it does (the cost per admitted file);
- idempotency begin + finish: ``idempotency_begin()`` before forwarding, ``idempotency_finish()`` after
  (the cost per request that carries an Idempotency-Key);
- held part 1 MiB put + read: one Uploads-API part sealed and stored, then read back.

Both stores are the real ones (SQLite: WAL, synchronous=FULL, in a temp dir; PostgreSQL: a pool on
the local server, a database of its own created and dropped by this script). Backends alternate in
``--rounds`` rounds so that a load change on the shared machine hits both. The ``--threads`` rows run
the same operations from that many threads at once (one gateway process serving concurrent requests).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import info_block, update_doc

from bastion.gateway.state import Admitted, SQLStateStore, open_sqlite_store

TITLE = "State store"
READING = [
    "",
    "Reading: SQLite runs in the gateway process (one connection, transactions serialised by a lock, an fsync",
    "per commit); PostgreSQL is a server process reached over a socket: admit + lookup is four round trips",
    "(BEGIN, INSERT, COMMIT with its fsync, SELECT), idempotency begin + finish six. On one machine that is",
    "the price per call; with concurrent calls PostgreSQL transactions run side by side on pool",
    "connections while SQLite queues behind one, so PostgreSQL's p99 is lower there. A held part crosses",
    "the socket twice (sealed chunks in, out again) and is written to the WAL: parts are the largest",
    "difference, paid once per 1 MiB of an Uploads-API part. Wall-clock figures on a loaded 2-core",
    "machine (see the load average) are upper bounds.",
]
PART = os.urandom(1024 * 1024)


def admitted(ref: str) -> Admitted:
    return Admitted(
        "openai", ref, "sha256:0123456789abcdef", "redact", "personal", "1" * 64, "2" * 64, 100, "pack:eu-gdpr",
        "fine-tune", datetime.now(UTC),
    )  # fmt: skip


def op_admit(s: SQLStateStore, i: str) -> None:
    s.admit(admitted(f"file-{i}"))
    assert s.admitted("openai", f"file-{i}", client="sha256:0123456789abcdef") is not None


def op_idem(s: SQLStateStore, i: str) -> None:
    assert s.idempotency_begin("openai:sha256:0123456789abcdef:files", f"k{i}", "r" * 64).proceed
    s.idempotency_finish("openai:sha256:0123456789abcdef:files", f"k{i}", 200, [("content-type", "json")], b"{}")


def op_part(s: SQLStateStore, i: str) -> None:
    blob = s.parts.put(PART)
    assert sum(len(c) for c in s.parts.read(blob.handle)) == len(PART)
    s.parts.delete(blob.handle)


OPS: dict[str, Callable[[SQLStateStore, str], None]] = {
    "admit + lookup": op_admit,
    "idempotency begin + finish": op_idem,
    "held part 1 MiB put + read": op_part,
}


def run(store: SQLStateStore, op: Callable[[SQLStateStore, str], None], n: int, threads: int, tag: str) -> list[float]:
    """Latencies (seconds) of ``n`` calls of ``op`` spread over ``threads`` threads."""
    out: list[float] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        mine = []
        for k in range(n // threads):
            key = f"{tag}-{t}-{k}"
            t0 = time.perf_counter()
            op(store, key)
            mine.append(time.perf_counter() - t0)
        with lock:
            out.extend(mine)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=2000, help="calls per operation, backend and concurrency")
    ap.add_argument("--part-ops", type=int, default=100, help="calls of the 1 MiB part operation")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument(
        "--pg", default=os.environ.get("BASTION_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    ap.add_argument("--no-doc", action="store_true", help="only print")
    args = ap.parse_args()

    import psycopg

    from bastion.gateway.state.postgres import open_postgres_store, safe_url

    dbname = f"bastion_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.pg, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
        server_version = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    info = psycopg.conninfo.conninfo_to_dict(args.pg)
    pg_url = (
        f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{dbname}"
    )
    load0 = os.getloadavg()[0]
    key = secrets.token_bytes(32)
    results: dict[tuple[str, int, str], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bastion-bench-state-") as tmp:
            stores = {
                "SQLite": open_sqlite_store(Path(tmp) / "state", part_key=key),
                "PostgreSQL": open_postgres_store(pg_url, part_key=key, pool_size=max(10, args.threads)),
            }
            try:
                for name, s in stores.items():  # warm-up: connections, caches, prepared statements
                    for op in OPS.values():
                        run(s, op, 20, 1, f"warm-{name}")
                for r in range(args.rounds):
                    for opname, op in OPS.items():
                        n = args.part_ops if op is op_part else args.ops
                        for threads in (1, args.threads):
                            order = list(stores.items()) if r % 2 == 0 else list(stores.items())[::-1]
                            for name, s in order:
                                lat = run(s, op, max(threads, n // args.rounds), threads, f"r{r}-{threads}")
                                results.setdefault((opname, threads, name), []).extend(lat)
            finally:
                for s in stores.values():
                    s.close()
    finally:
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    load1 = os.getloadavg()[0]

    rows = []
    for opname in OPS:
        for threads in (1, args.threads):
            lite = results[(opname, threads, "SQLite")]
            pg = results[(opname, threads, "PostgreSQL")]
            rows.append(
                f"| {opname} | {threads} | {len(pg)} | {pct(lite, 0.5):.2f} / {pct(lite, 0.99):.2f} "
                f"| {pct(pg, 0.5):.2f} / {pct(pg, 0.99):.2f} "
                f"| **{pct(pg, 0.5) - pct(lite, 0.5):+.2f} / {pct(pg, 0.99) - pct(lite, 0.99):+.2f}** "
                f"| {1000 * statistics.mean(lite):.2f} / {1000 * statistics.mean(pg):.2f} |"
            )
    body = "\n".join(
        [
            info_block(
                {
                    "command": f"`python bench/state_store.py --ops {args.ops} --part-ops {args.part_ops} "
                    f"--rounds {args.rounds} --threads {args.threads}`",
                    "PostgreSQL": f"{server_version} on {safe_url(args.pg).rsplit('/', 1)[0]} (same machine; "
                    "fsync on commit, default settings), pool of the store",
                    "SQLite": "WAL, synchronous=FULL, temp dir on the local disk",
                    "1-min load average": f"{load0:.1f} at start, {load1:.1f} at end (shared machine)",
                }
            ),
            "",
            "Latency per call (ms) of the real stores, backends alternating within each round; with N threads",
            "the calls run concurrently from one process (the gateway serving concurrent requests).",
            "",
            "| operation | threads | calls per backend | SQLite p50 / p99 | PostgreSQL p50 / p99 "
            "| PostgreSQL minus SQLite p50 / p99 | mean SQLite / PostgreSQL |",
            "|---|---|---|---|---|---|---|",
            *rows,
            *READING,
        ]
    )
    print(body)
    if not args.no_doc:
        update_doc(TITLE, body)


if __name__ == "__main__":
    main()
