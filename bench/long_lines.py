"""How the scan time of one long line grows with its length, per shape of line.

A JSONL line may be 16 MiB, and a record's text one string: a detector that walks all earlier matches, or
copies the whole text, for each match costs the square of the line's length there. Each shape here is one
piece of text repeated into a single JSON string of ``--small`` and of 4 x ``--small`` characters, scanned by
``JsonlScanner`` with ``pack:eu-gdpr``; the table shows CPU seconds for both and their ratio. About 4 is
linear; 16 would be quadratic.

    python bench/long_lines.py [--small 200000] [--no-doc]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import info_block, load_average, update_doc

from bastion.policies import JsonlScanner, PolicyEngine, load_policy

TITLE = "Scan time of long lines"
SHAPES = [
    "born 12.03.1985 ",
    "45 years, 12.03.1979 ",
    "ref 72498494 ok ",
    "Tel 030 901820 ",
    "+49 30 901820 ",
    "IdNr 36574261809 ",
    "X2482300W ",
    "4111 1111 1111 1111 ",
    "4111*",
    "4111\n",
    "card 4111,1111,1111,1111, ",
    "four one one one, ",
    "four one one one one one one one. ",
    "O2O 7946 O958 ",
    "GBO4 VFDZ 4956 ",
    "+34~887~",
    "DE89 3704 0044 0532 0130 00 ",
    "anna@example.com ",
    "anna at example dot com ",
    "&#52;&#49; ",
    "%41",
    "Name: Anna Berg ",
    "I live at 12 Main Street, London SW1A 1AA ",
    "Patient: John Smith, diabetes ",
    "81[.]2[.]69[.]160 ",
    "tel 08~847~00~52 ",
    "anna\\_berg@example.com ",
    "(at) firma (punkt) de ",
    "YW5uYUBleGFtcGxlLmNvbQ== ",
    "QW5uYSBCZXJnIGFubmFAZXhhbXBsZS5jb20g",
    "aB",
]


def cpu_seconds(engine: PolicyEngine, piece: str, size: int) -> float:
    line = (json.dumps({"t": piece * (size // len(piece))}) + "\n").encode()
    scanner = JsonlScanner(engine, source="long-line")
    t0 = time.process_time()
    scanner.feed(line)
    scanner.finish()
    return time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=200_000, help="characters of the shorter line")
    ap.add_argument("--no-doc", action="store_true", help="only print; do not update docs/benchmarks.md")
    args = ap.parse_args()
    load_start = load_average()
    engine = PolicyEngine(load_policy("pack:eu-gdpr"))
    big = 4 * args.small
    rows = [f"| line of | CPU-s at {args.small:,} | CPU-s at {big:,} | ratio |", "|---|---:|---:|---:|"]
    for piece in SHAPES:
        small_s, big_s = cpu_seconds(engine, piece, args.small), cpu_seconds(engine, piece, big)
        rows.append(f"| `{piece!r}` | {small_s:.2f} | {big_s:.2f} | {big_s / small_s:.1f} |")
        print(rows[-1], flush=True)
    body = "\n\n".join(
        [
            f"Command: `python bench/long_lines.py --small {args.small}`. " + (__doc__ or "").split("\n\n")[1],
            info_block({"load average (1/5/15 min) before → after": f"{load_start} → {load_average()}"}),
            "\n".join(rows),
        ]
    )
    if not args.no_doc:
        update_doc(TITLE, body)


if __name__ == "__main__":
    main()
