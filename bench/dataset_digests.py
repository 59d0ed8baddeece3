"""Per-record dataset digests (``hash_dataset``) on a 200 MB chat JSONL.

    python bench/dataset_digests.py         # generates bench/.data/chat-200mb.jsonl, updates docs/benchmarks.md
    python bench/dataset_digests.py --keep  # keep the generated file for the next run

The file is generated deterministically (seeded): multi-turn chat records of varying length, about
one in seven with non-ASCII text, one in twenty with an emoji (non-BMP), one in ten with a float
score, so both of hash_dataset's canonicalization paths are exercised. Reported: records/s and MB/s
of ``hash_dataset`` (best of 3), next to the plain reference it must agree with digest for digest
(``json.loads`` + ``rfc8785.dumps`` + SHA-256 per record, run once) and the whole-file SHA-256 alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rfc8785
from _common import DATA, info_block, load_average, measure, update_doc, warm_cache

from bastion.provenance.datasets import hash_dataset
from bastion.provenance.hashing import sha256_file

TARGET_BYTES = 200 * 1000 * 1000
_WORDS_TEXT = (
    "the of and to in is you that it was for on are as with his they at be this have from or one had by word "
    "but not what all were we when your can said there use an each which she do how their if will up other "
    "about out many then them these so some her would make like him into time has look two more write go see "
    "number no way could people my than first water been call who its now find long down day did get come made "
    "may part model train data token loss eval gradient policy audit consent record provenance"
)
WORDS = _WORDS_TEXT.split()


def generate(path: Path) -> Path:
    if path.exists() and path.stat().st_size >= TARGET_BYTES:
        return path
    rng = random.Random(20261125)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    written = 0
    i = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        while written < TARGET_BYTES:
            turns = rng.randint(1, 4)
            messages = [{"role": "system", "content": "You are a careful assistant for a regulated bank."}]
            for _ in range(turns):
                for role in ("user", "assistant"):
                    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 70)))
                    if i % 7 == 0:
                        text += " — Grüße aus Köln, café"
                    if i % 20 == 0:
                        text += " 👍"
                    messages.append({"role": role, "content": text})
            record: dict[str, object] = {"id": f"conv-{i:08d}", "messages": messages}
            if i % 10 == 0:
                record["score"] = round(rng.random(), 4)
            line = json.dumps(record, ensure_ascii=False) + "\n"
            fh.write(line)
            written += len(line.encode("utf-8"))
            i += 1
    tmp.replace(path)
    return path


def reference_digests(path: Path) -> list[str]:
    out = []
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                out.append(hashlib.sha256(rfc8785.dumps(json.loads(raw))).hexdigest())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="keep bench/.data/chat-200mb.jsonl")
    ap.add_argument("--no-doc", action="store_true", help="print results only")
    args = ap.parse_args()

    path = generate(DATA / "chat-200mb.jsonl")
    size = path.stat().st_size
    warm_cache(path)
    load_before = load_average()

    result: dict[str, object] = {}

    def run() -> None:
        result["d"] = hash_dataset(path)

    runs = [measure(run) for _ in range(3)]
    d = result["d"]
    records = d.records  # type: ignore[attr-defined]
    ref_wall, ref_cpu = measure(lambda: result.__setitem__("ref", reference_digests(path)))
    if result["ref"] != d.record_digests:  # type: ignore[attr-defined]
        sys.exit("hash_dataset disagrees with the rfc8785 reference")
    file_runs = [measure(lambda: sha256_file(path)) for _ in range(3)]
    load_after = load_average()

    def row(name: str, wall: float, cpu: float, recs: int | None) -> str:
        rps = f"{recs / wall:,.0f} | {recs / cpu:,.0f}" if recs else "- | -"
        return f"| {name} | {wall:.2f} | {cpu:.2f} | {rps} | {size / wall / 1e6:.1f} | {size / cpu / 1e6:.1f} |"

    table = "\n".join(
        [
            "| what | wall (s) | CPU (s) | records/s (wall) | records/s (CPU) | MB/s (wall) | MB/s (CPU) |",
            "|---|---:|---:|---:|---:|---:|---:|",
            row(
                f"**hash_dataset** (best of 3; wall runs {', '.join(f'{w:.2f}' for w, _ in runs)})",
                min(w for w, _ in runs),
                min(c for _, c in runs),
                records,
            ),
            row("reference: json.loads + rfc8785.dumps + SHA-256 per record (1 run)", ref_wall, ref_cpu, records),
            row(
                "whole-file SHA-256 only (best of 3)",
                min(w for w, _ in file_runs),
                min(c for _, c in file_runs),
                None,
            ),
        ]
    )
    body = (
        "Command: `python bench/dataset_digests.py`. A deterministic chat JSONL "
        f"({size / 1e6:.0f} MB, {records:,} records, {size / records:.0f} bytes/record on average; "
        "1 in 7 records with non-ASCII text, 1 in 20 with an emoji, 1 in 10 with a float score). "
        "Page cache warm. Per-record digests are checked equal to the plain rfc8785 reference.\n\n"
        + info_block({"load average (1/5/15 min) before / after": f"{load_before} → {load_after}"})
        + "\n\n"
        + table
        + "\n\nhash_dataset serializes records without floats, 16+ digit numbers or non-BMP characters with "
        "Python's C JSON encoder, whose output is byte-identical to RFC 8785 for them (property-tested), and "
        "everything else with `rfc8785`."
    )
    print(body)
    if not args.no_doc:
        update_doc("Dataset digests: per-record canonical hashing of a 200 MB chat JSONL", body)
    if not args.keep:
        path.unlink()


if __name__ == "__main__":
    main()
