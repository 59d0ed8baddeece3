"""The fuzz harnesses (tests/fuzz/fuzz_*.py) run: each replays its whole seed corpus without a crash.

The fuzzing itself runs in .ci/run (tools/fuzz); this keeps a broken harness or a seed that crashes
from waiting until then.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent / "fuzz"
HARNESSES = sorted(FUZZ.glob("fuzz_*.py"))


def test_every_harness_has_a_seed_corpus() -> None:
    assert HARNESSES, "no harnesses found"
    for harness in HARNESSES:
        target = harness.stem.removeprefix("fuzz_")
        corpus = FUZZ / "corpus" / target
        assert corpus.is_dir() and any(corpus.iterdir()), f"{harness.name} has no seeds in {corpus}"


@pytest.mark.parametrize("harness", HARNESSES, ids=[h.stem for h in HARNESSES])
def test_harness_replays_its_seed_corpus(harness: Path, tmp_path: Path) -> None:
    target = harness.stem.removeprefix("fuzz_")
    corpus = FUZZ / "corpus" / target
    args = [sys.executable, str(harness), "-runs=0", f"-artifact_prefix={tmp_path}/", str(tmp_path / "new")]
    (tmp_path / "new").mkdir()
    if corpus.is_dir():
        args.append(str(corpus))
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "INITED" in done.stderr or "Done" in done.stderr, done.stderr[-2000:]
