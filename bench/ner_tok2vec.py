"""Benchmark: the NER row of ``bench/detection.py`` with and without dropping spaCy's unheard ``tok2vec``.

    .venv/bin/python bench/ner_tok2vec.py                 # 1500 records (seed 7), 2 runs of each, alternating
    .venv/bin/python bench/ner_tok2vec.py --runs 3

Each run is its own process (the same warm-up as the detection bench: the worker started and the models
loaded, one record scanned, then every record timed in CPU seconds); "keep" replaces
``drop_unheard_tok2vec`` by a no-op, "drop" is the shipped code. The findings of both are compared.
Needs the ``[ner]`` extra and an English or French spaCy model.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def one_run(variant: str, records: int, seed: int) -> None:
    sys.path.insert(0, str(HERE))
    from bastion.policies.detectors import ner

    if variant == "keep":
        ner.drop_unheard_tok2vec = lambda nlp: None  # type: ignore[assignment]
    from detection import DATA, bastion_engines, run_bastion
    from pii_corpus import write_corpus

    corpus = DATA / f"pii-corpus-{records}-{seed}.jsonl"
    write_corpus(corpus, records, seed)
    rows = [json.loads(line) for line in corpus.read_text(encoding="utf-8").splitlines()]
    engines = bastion_engines(True)
    name = next((n for n in engines if "NER" in n), None)
    if name is None:
        raise SystemExit("no NER row: install the [ner] extra and an English or French spaCy model")
    for other, engine in engines.items():
        if other != name:
            engine.close()
    found, cpu = run_bastion(engines[name], rows)
    engines[name].close()
    print(json.dumps({"variant": variant, "cpu_s": cpu, "findings": found}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--one", choices=("keep", "drop"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        one_run(args.one, args.records, args.seed)
        return
    results: dict[str, list[float]] = {"keep": [], "drop": []}
    findings: dict[str, object] = {}
    for _ in range(args.runs):
        for variant in ("keep", "drop"):
            out = subprocess.run(
                [sys.executable, __file__, "--one", variant, "--records", str(args.records), "--seed", str(args.seed)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            got = json.loads(out.strip().splitlines()[-1])
            results[variant].append(got["cpu_s"])
            findings[variant] = got["findings"]
    print("| NER row | CPU-s per run |\n|---|---|")
    for variant, label in (("keep", "shared tok2vec kept (before)"), ("drop", "unheard tok2vec dropped")):
        print(f"| {label} | {' / '.join(f'{c:.2f}' for c in results[variant])} |")
    print(f"\nsame findings: {findings['keep'] == findings['drop']}")


if __name__ == "__main__":
    main()
