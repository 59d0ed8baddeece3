"""Benchmark: ``bastion scan --jobs N`` wall-clock throughput against one process, on the same file.

    .venv/bin/python bench/scan_jobs.py                  # 8 MB of bench/scan_data.py chat data, jobs 1 and 2
    .venv/bin/python bench/scan_jobs.py --size-mb 32 --jobs 1 2 4 --policy pack:eu-gdpr

The engine is built once (not timed); each run scans the whole file and writes the redacted output to a
file, as ``bastion scan --redacted-out`` does, and the outputs are checked to be byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scan_data import write_dataset  # noqa: E402

from bastion.policies import PolicyEngine, load_policy  # noqa: E402
from bastion.policies.parallel import scan_file  # noqa: E402

DATA = HERE / ".data" / "scan"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size-mb", type=int, default=8)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--policy", default="pack:eu-gdpr")
    args = ap.parse_args()
    DATA.mkdir(parents=True, exist_ok=True)
    path = DATA / f"chat-{args.size_mb}mb.jsonl"
    if not path.exists():
        write_dataset(path, args.size_mb * 1024 * 1024)
    size = path.stat().st_size
    engine = PolicyEngine(load_policy(args.policy))
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {args.policy}")
    print(f"file {path.name}: {size / 1e6:.1f} MB")
    digests = set()
    for jobs in args.jobs:
        out_path = DATA / f"out-jobs{jobs}.jsonl"
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        with out_path.open("wb") as out:
            summary = scan_file(engine, path, jobs=jobs, out=out)
        wall = time.perf_counter() - t0
        digests.add(hashlib.sha256(out_path.read_bytes()).hexdigest())
        print(
            f"--jobs {jobs}: {wall:.2f} s wall, {size / 1e6 / wall:.1f} MB/s, "
            f"{summary.records} records, {summary.redacted_records} redacted, load average {load:.1f} at start"
        )
        out_path.unlink()
    print("outputs identical" if len(digests) == 1 else "OUTPUTS DIFFER")


if __name__ == "__main__":
    main()
