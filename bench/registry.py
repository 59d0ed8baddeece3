"""Run registry: ingest rate and record-query latency with many indexed runs and a very large dataset.

    python bench/registry.py [--runs 10000] [--records 10000000] [--queries 300] [--pg URL --pg-records 1000000]

What it measures (SQLite, and PostgreSQL with ``--pg``):
- ingest of run records: ``Registry.put_artifact`` of ``--runs`` **synthetic** run records (typed
  predicates built in the script: 3 datasets each drawn from a pool of 500 shared datasets, a base
  model, 6 output files, a parent link for every 10th run); one transaction per record, as
  ``bastion registry add`` does. Verification is not included here: it re-hashes every file of the
  artifact (see the Verify section); the end-to-end ``add`` of a real signed run (verify + index) is
  measured separately on ``--real`` small signed runs;
- ingest of record digests: ``Registry.put_records`` of one dataset with ``--records`` synthetic
  record digests (SHA-256 of the record number; the Merkle root they are checked against is computed
  first, in a separate pass);
- record queries: ``lineage.by_record`` (the erasure query: lookup, chunk read, proof, the runs that
  used the dataset) for random records of the large dataset, which 5 of the indexed runs use, and for
  records that are in no dataset; p50/p99 over ``--queries`` queries each;
- ``lineage.by_model`` on a run whose ancestry is a chain of 10 runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import info_block, update_doc

from bastion.provenance.registry import lineage, open_registry
from bastion.provenance.registry.ingest import Trust, add_record, manifest_digest
from bastion.provenance.registry.proofs import chunk_roots, root_over_chunks
from bastion.provenance.registry.store import ArtifactEntry, DatasetUse, Link, Registry

TITLE = "Run registry"
POOL = 500


def _h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def record_digests(n: int, salt: bytes = b"") -> Iterator[bytes]:
    sha = hashlib.sha256
    for i in range(n):
        yield sha(salt + i.to_bytes(8, "big")).digest()


def synthetic_entry(i: int, big: tuple[str, str, int] | None) -> ArtifactEntry:
    rng = random.Random(i)
    files = tuple(sorted((f"model-{k}.safetensors", _h(f"run {i} file {k}")) for k in range(6)))
    datasets = [rng.randrange(POOL) for _ in range(3)]
    roles = ("train", "train", "eval")
    uses = [
        DatasetUse(f"data-{d}.jsonl", roles[j], _h(f"dataset {d}"), 1000, _h(f"root {d}"), 10**6, "jsonl", None)
        for j, d in enumerate(datasets)
    ]
    if big is not None:
        uses.append(DatasetUse("big.jsonl", "train", big[0], big[2], big[1], 10**10, "jsonl", None))
    base = _h("base model") if i % 10 == 0 else manifest_digest(
        sorted((f"model-{k}.safetensors", _h(f"run {i - 1} file {k}")) for k in range(6))
    )  # fmt: skip
    links = (Link("base_model", base, "artifact", "base"),)
    predicate: dict[str, Any] = {
        "run_id": f"run-{i:06d}",
        "framework": "transformers",
        "datasets": [
            {"name": u.name, "role": u.role, "digest": {"sha256": u.sha256}, "records": u.records,
             "merkle_root": u.merkle_root}
            for u in uses
        ],
        "base_model": {"path_name": "base", "digest": {"sha256": base}, "files": []},
        "ledger": {"path": "bastion/ledger.jsonl", "head": _h(f"head {i}"), "entries": 40},
    }  # fmt: skip
    return ArtifactEntry(
        record_id=_h(f"statement {i}"),
        artifact_digest=manifest_digest(files),
        run_id=f"run-{i:06d}",
        kind="run",
        framework="transformers",
        base_model=base,
        base_model_name="base",
        tokenizer=base,
        signer={"type": "key", "fingerprint": "sha256:" + _h("key")},
        verified=True,
        failures=(),
        started_at=f"2026-01-01T00:00:{i % 60:02d}.000000Z",
        finished_at=None,
        ledger_head=_h(f"head {i}"),
        ledger_entries=40,
        path=f"/runs/{i}",
        predicate=predicate,
        files=files,
        links=links,
        uses=tuple(uses),
    )


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return 1000 * s[min(len(s) - 1, int(q * len(s)))]


def bench_backend(name: str, location: str, args: argparse.Namespace, records: int) -> dict[str, Any]:
    out: dict[str, Any] = {"backend": name}
    print(f"[{name}] root of {records:,} record digests ...", file=sys.stderr)
    t0 = time.perf_counter()
    roots = [r for _, _, r in chunk_roots(record_digests(records))]
    big_root = root_over_chunks(roots)
    out["root_s"] = time.perf_counter() - t0
    big = (_h("the big dataset"), big_root, records)
    with open_registry(location) as reg:
        print(f"[{name}] {args.runs:,} run records ...", file=sys.stderr)
        t0 = time.perf_counter()
        for i in range(args.runs):
            step = max(1, args.runs // 5)  # 5 of the runs use the large dataset
            reg.put_artifact(synthetic_entry(i, big if i % step == min(7, step - 1) and i // step < 5 else None))
        out["runs_s"] = time.perf_counter() - t0
        print(f"[{name}] {records:,} record digests ...", file=sys.stderr)
        t0 = time.perf_counter()
        reg.put_records(big[0], big_root, record_digests(records), source="bench")
        out["records_s"] = time.perf_counter() - t0
        out["size"] = _size(reg, location)
        rng = random.Random(7)
        hit_lat, miss_lat = [], []
        for _ in range(args.queries):
            i = rng.randrange(records)
            d = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
            t0 = time.perf_counter()
            answer = lineage.by_record(reg, d)
            hit_lat.append(time.perf_counter() - t0)
            assert len(answer["runs"]) == 5 and answer["runs"][0]["proof"]["index"] == i, answer["runs"][:1]
            assert all(r["proof_matches_signed_root"] for r in answer["runs"])
            miss = hashlib.sha256(b"absent" + i.to_bytes(8, "big")).hexdigest()
            t0 = time.perf_counter()
            assert lineage.by_record(reg, miss)["runs"] == []
            miss_lat.append(time.perf_counter() - t0)
        out["hit"], out["miss"] = hit_lat, miss_lat
        model_lat = []
        for k in range(min(args.queries, 50)):
            target = synthetic_entry(10 * rng.randrange(1, args.runs // 10) - 1 - (k % 3), None).artifact_digest
            t0 = time.perf_counter()
            answer = lineage.by_model(reg, target)
            model_lat.append(time.perf_counter() - t0)
            assert len(answer["artifacts"]) >= 8, len(answer["artifacts"])
        out["model"] = model_lat
    return out


def _size(reg: Registry, location: str) -> str:
    if location.startswith("postgresql://"):
        (size,) = reg.rows("SELECT pg_database_size(current_database())")[0]
        return f"{int(size) / 2**20:,.0f} MiB (whole database)"
    total = sum(p.stat().st_size for p in Path(location).parent.glob(Path(location).name + "*"))
    return f"{total / 2**20:,.0f} MiB"


def bench_real(n: int, tmp: Path) -> float:
    """Seconds per record of ``add_record`` (verify + index) on small real signed runs."""
    from bastion.provenance.signing import generate_key_pair, sign_run
    from bastion.provenance.signing.config import SigningConfig
    from bastion.provenance.signing.testing import make_run_dir

    keys = generate_key_pair(tmp / "keys")
    dirs = []
    for i in range(n):
        d = make_run_dir(tmp / "real" / f"r{i}", run_id=f"real-{i}")
        sign_run(d, SigningConfig(backend="key", private_key=keys.private_key))
        dirs.append(d)
    with open_registry(str(tmp / "real.sqlite3")) as reg:
        trust = Trust(public_key=(keys.public_key,))
        t0 = time.perf_counter()
        for d in dirs:
            assert add_record(reg, d, trust).status == "added"
        return (time.perf_counter() - t0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--records", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--real", type=int, default=50, help="small real signed runs for the end-to-end add")
    ap.add_argument("--pg", help="also run on this PostgreSQL server (a database of its own is created and dropped)")
    ap.add_argument("--pg-records", type=int, default=1_000_000)
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory(prefix="bastion-registry-bench-") as tmp:
        real_s = bench_real(args.real, Path(tmp))
        results.append(bench_backend("SQLite", str(Path(tmp) / "registry.sqlite3"), args, args.records))
    if args.pg:
        import psycopg

        from bastion.sqlstore.postgres import safe_url

        dbname = f"bastion_bench_registry_{os.getpid()}"
        with psycopg.connect(args.pg, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{dbname}"')
            server = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        try:
            url = args.pg.rsplit("/", 1)[0] + "/" + dbname
            r = bench_backend("PostgreSQL", url, args, args.pg_records)
            r["server"] = f"PostgreSQL {server} on {safe_url(args.pg).rsplit('/', 1)[0]}"
            results.append(r)
        finally:
            with psycopg.connect(args.pg, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
    load1 = os.getloadavg()[0]
    rows = []
    for r in results:
        n = args.records if r["backend"] == "SQLite" else args.pg_records
        rows.append(
            f"| {r['backend']} | {args.runs:,} runs: {args.runs / r['runs_s']:,.0f} records/s ({r['runs_s']:.1f} s) "
            f"| {n:,} record digests: {n / r['records_s']:,.0f}/s ({r['records_s']:.0f} s) | {r['size']} "
            f"| {pct(r['hit'], 0.5):.1f} / {pct(r['hit'], 0.99):.1f} | {pct(r['miss'], 0.5):.1f} / "
            f"{pct(r['miss'], 0.99):.1f} | {pct(r['model'], 0.5):.1f} / {pct(r['model'], 0.99):.1f} |"
        )
    extra = {
        "command": f"`python bench/registry.py --runs {args.runs} --records {args.records} --queries {args.queries}"
        + (f" --pg ... --pg-records {args.pg_records}`" if args.pg else "`"),
        "SQLite": "WAL, synchronous=FULL, temp dir on the local disk",
        "1-min load average": f"{load0:.1f} at start, {load1:.1f} at end (shared machine)",
    }
    for r in results:
        if "server" in r:
            extra["PostgreSQL"] = f"{r['server']} (same machine, default settings)"
    body = "\n".join(
        [
            info_block(extra),
            "",
            "Synthetic run records (typed predicates built by the script, not verified: see the module",
            "docstring) and synthetic record digests; queries go through the real lineage functions.",
            "End-to-end `add` of a small real signed run (verify: signature, statement, every file, model",
            f"signature, ledger; then index): **{1000 * real_s:.0f} ms per record** ({args.real} runs, SQLite).",
            f"Computing the large dataset's Merkle root first (the check value): {results[0]['root_s']:.0f} s",
            f"for {args.records:,} records on SQLite's pass (pure Python SHA-256 per node)."
            + (
                f" PostgreSQL ran with {args.pg_records:,}\nrecords (`--pg-records`) to keep the run short on the "
                "shared machine."
                if args.pg and args.pg_records != args.records
                else ""
            ),
            "",
            "| backend | run-record ingest | record-digest ingest | size on disk | record query p50 / p99 ms "
            "(in 5 runs, with proofs) | record query, absent p50 / p99 ms | model lineage (10-run chain) "
            "p50 / p99 ms |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "Reading: a record query is one index lookup on the digest's first 8 bytes, one 32 KiB chunk read and",
            "hashed (1024 leaves), the path above it read from the stored levels of the chunk-root tree (about",
            "20k nodes = 640 KiB for 10M records), then the runs that used the dataset, their derived models and",
            "the coverage check; its cost grows with log(records), not with the dataset. On PostgreSQL each of",
            "those steps is a round trip over the socket (about 25 per answer here), which is most of its higher",
            "latency. Ingest of record digests is dominated by Python-side hashing of the chunk trees (the same",
            "work as the recorder's own Merkle root) and the index inserts; it happens once per dataset, however",
            "many runs use it. Run-record ingest is one fsynced transaction per record.",
        ]
    )
    print(body)
    if not args.no_doc:
        update_doc(TITLE, body)


if __name__ == "__main__":
    main()
