"""Deploy-time verification cost: ``bastion verify`` vs stock ``model_signing verify`` vs ``sha256sum``.

    python bench/verify.py                 # 2 GiB model dir; updates '## Verify' in docs/benchmarks.md
    python bench/verify.py --size-mib 256  # quicker run (does not touch the docs unless --write-doc)

The directory (4 weight shards + small JSON files) is generated once under bench/.data/ (gitignored),
given a run record, and signed with a throwaway key. Each contender then checks the same files from a
warm page cache; rounds are interleaved and the best of ``--rounds`` is reported:

- ``bastion verify DIR --key PUB``: bundle signature, statement, every file digest, model signature,
  ledger chain (a full CLI process, startup included);
- ``model_signing verify key DIR --signature DIR/bastion/model.sig --public_key PUB``: the stock OpenSSF
  verifier on the same signature (full CLI process);
- ``sha256sum FILES``: just hashing the files once, single-threaded, for scale;
- ``verify()`` in-process: bastion's checks without interpreter start-up.

Goal: bastion verify <= 1.0x model_signing verify.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, MiB, info_block, load_average, update_doc, warm_cache

from bastion.provenance.signing import SigningConfig, generate_key_pair, sign_run
from bastion.provenance.signing.testing import make_run_dir
from bastion.provenance.verify import verify

BIN = Path(sys.executable).parent
SHARDS = 4


def build(size_mib: int) -> tuple[Path, Path]:
    """The signed model directory and the public key (reused across runs when the size matches)."""
    from _common import deterministic_file

    root = DATA / f"verify-{size_mib}mib"
    model = root / "model"
    shard = size_mib * MiB // SHARDS
    for i in range(SHARDS):
        deterministic_file(model / f"model-{i + 1:05d}-of-{SHARDS:05d}.safetensors", shard, seed=100 + i)
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "hidden_size": 4096}\n')
    (model / "tokenizer_config.json").write_text('{"model_max_length": 4096}\n')
    shutil.rmtree(model / "bastion", ignore_errors=True)
    make_run_dir(model, files={}, run_id=f"bench-{size_mib}")
    keys = generate_key_pair(root / "keys", force=True)
    sign_run(model, SigningConfig(backend="key", private_key=keys.private_key))
    return model, keys.public_key


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed ({res.returncode}): {res.stdout}{res.stderr}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--write-doc", action="store_true", help="update docs/benchmarks.md even for a non-default size")
    args = ap.parse_args()

    model, pub = build(args.size_mib)
    files = sorted(p for p in model.rglob("*") if p.is_file() and "bastion" not in p.relative_to(model).parts)
    size = sum(p.stat().st_size for p in files)
    warm_cache(*files)
    report = verify(model, public_key=pub)
    assert report.ok, report.lines()

    bastion_cmd = [str(BIN / "bastion"), "verify", str(model), "--key", str(pub)]
    stock_cmd = [
        str(BIN / "model_signing"), "verify", "key", str(model),
        "--signature", str(model / "bastion" / "model.sig"), "--public_key", str(pub),
    ]  # fmt: skip
    sha_cmd = [shutil.which("sha256sum") or "sha256sum", *map(str, files)]

    names = ("bastion verify (CLI)", "model_signing verify key (CLI)", "sha256sum", "verify() in-process")
    results: dict[str, list[float]] = {name: [] for name in names}
    load_before = load_average()
    for _ in range(args.rounds):  # interleaved so that machine load hits every contender alike
        results["bastion verify (CLI)"].append(timed(bastion_cmd))
        results["model_signing verify key (CLI)"].append(timed(stock_cmd))
        results["sha256sum"].append(timed(sha_cmd))
        t0 = time.perf_counter()
        ok = verify(model, public_key=pub).ok
        results["verify() in-process"].append(time.perf_counter() - t0)
        assert ok
    load_after = load_average()

    best = {k: min(v) for k, v in results.items()}
    ratio = best["bastion verify (CLI)"] / best["model_signing verify key (CLI)"]
    rows = "\n".join(
        f"| {name} | {best[name]:.2f} | {size / best[name] / 1e6:,.0f} | {', '.join(f'{t:.2f}' for t in times)} |"
        for name, times in results.items()
    )
    body = f"""
`python bench/verify.py` — a {size / MiB / 1024:.2f} GiB model directory ({len(files)} files: {SHARDS} weight shards +
JSON), signed with a P-256 key; every contender checks the same files from a warm page cache, runs interleaved,
best of {args.rounds}.

| contender | best (s) | MB/s | all runs (s) |
|---|---:|---:|---|
{rows}

- bastion verify / model_signing verify: **{ratio:.2f}x** (goal <= 1.0x). bastion verify does strictly more
  (statement bundle, statement == signed payload, model signature, same-signer check, ledger chain) but hashes
  each file once, with one thread per file like model_signing.
- bastion verify / sha256sum: {best["bastion verify (CLI)"] / best["sha256sum"]:.2f}x (sha256sum is single-threaded
  and does no signature work).
- load average (1/5/15 min) before: {load_before}; after: {load_after} (shared machine).

{info_block()}
"""
    print(body)
    if args.size_mib == 2048 or args.write_doc:
        update_doc("Verify", body)


if __name__ == "__main__":
    main()
