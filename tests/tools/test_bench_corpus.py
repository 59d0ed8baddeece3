"""bench/pii_corpus.py: the labelled corpus is a function of its seed alone (not of PYTHONHASHSEED), so a
benchmark row can be re-run on the same records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _corpus(tmp_path: Path, hash_seed: str) -> bytes:
    out = tmp_path / f"corpus-{hash_seed}.jsonl"
    code = (
        f"import sys; sys.path.insert(0, {str(BENCH)!r}); from pathlib import Path; "
        f"from pii_corpus import write_corpus; write_corpus(Path({str(out)!r}), 300, 7)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONHASHSEED": hash_seed})
    return out.read_bytes()


def test_the_same_seed_writes_the_same_corpus_whatever_the_hash_seed(tmp_path: Path) -> None:
    first = _corpus(tmp_path, "1")
    assert first and first == _corpus(tmp_path, "2") == _corpus(tmp_path, "3")
