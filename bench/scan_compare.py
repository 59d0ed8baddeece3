"""Scan throughput of the current tree on the benchmark files, as JSON, for before/after comparisons.

    .venv/bin/python bench/scan_compare.py                       # this tree
    PYTHONPATH=/tmp/old .venv/bin/python bench/scan_compare.py   # another checkout's bastion package first

Rows: the policy with the Hyperscan pre-filter (if installed), the same with the pure-``re`` paths, and the
policy plus one custom ``regex`` detector (which older versions could not pre-filter). Data files come from
``bench/scan.py`` (``bench/.data/scan/``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from scan import DATA, throughput  # noqa: E402

import bastion.policies  # noqa: E402
from bastion.policies import PolicyEngine, load_policy, policy_from_mapping  # noqa: E402

CUSTOM = {"id": "project-code", "type": "regex", "entity": "PROJECT_CODE", "pattern": r"PRJ-[0-9]{4}"}


def engines(policy: str) -> dict[str, PolicyEngine]:
    base = load_policy(policy)
    os.environ["BASTION_NO_HYPERSCAN"] = "1"  # what the engine does when hyperscan is not installed
    try:
        plain = PolicyEngine(base)
    finally:
        del os.environ["BASTION_NO_HYPERSCAN"]
    data = base.model_dump(mode="json", exclude_none=True)
    data["detectors"].append(CUSTOM)
    return {"hyperscan": PolicyEngine(base), "re": plain, "hyperscan+regex": PolicyEngine(policy_from_mapping(data))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--policy", default="pack:eu-gdpr")
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args()
    files = {"dense": DATA / f"chat-{args.size_mb}mb.jsonl", "sparse": DATA / f"chat-{args.size_mb}mb-sparse0.1.jsonl"}
    res: dict[str, Any] = {"package": str(Path(bastion.policies.__file__).parent), "load": os.getloadavg()[0]}
    for name, engine in engines(args.policy).items():
        for label, path in files.items():
            r = throughput(engine, path, DATA / f"redacted-compare-{label}.jsonl")
            res[f"{label}/{name}"] = {k: r[k] for k in ("mb_per_cpu_s", "mb_per_s_wall", "records", "redacted_records")}
            print(label, name, f"{r['mb_per_cpu_s']:.1f} MB/cpu-s", file=sys.stderr)
    res["load_end"] = os.getloadavg()[0]
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
