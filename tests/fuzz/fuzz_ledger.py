#!/usr/bin/env python3
"""Fuzz the ledger verifier (provenance/ledger.py): it says OK only for untouched bytes.

Input byte 0 chooses the mode:
- even: edits (insert / delete / replace bytes, from FuzzedDataProvider) applied to a real ledger
  written by :class:`Ledger`. Verified against its head and entry count, the result must be OK if and
  only if the bytes are unchanged; verified alone, OK if and only if the bytes are the original cut
  after a whole line (a truncation only the signed head can reveal).
- odd: the rest of the input is a whole ledger file; verification may fail, never crash.
Any exception other than a LedgerError is a crash.

    python tests/fuzz/fuzz_ledger.py -max_total_time=60 -dict=tests/fuzz/ledger.dict \\
        /tmp/corpus tests/fuzz/corpus/ledger
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import atheris

# Only the code under test is instrumented (coverage feedback where it matters, a fast start).
with atheris.instrument_imports(include=["bastion.provenance.ledger", "bastion.provenance.canonical"]):
    from bastion.errors import LedgerError
    from bastion.provenance.ledger import Ledger, verify_ledger

WORK = Path(tempfile.mkdtemp(prefix="bastion-fuzz-ledger-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
ORIGINAL_PATH = WORK / "original.jsonl"
with Ledger(ORIGINAL_PATH, fsync="never") as _led:
    _led.append("run.start", {"run_id": "r1", "config": {"lr": 5e-05, "epochs": 3, "tags": ["a", "é", "\U0001f600"]}})
    _led.append("log", {"step": 1, "metrics": {"loss": 0.5, "grad_norm": 1.0, "total_flos": 3.5e17, "neg": -0.0}})
    _led.append("checkpoint", {"path": "checkpoint-1", "digest": {"sha256": "0" * 64}, "note": 'q"\\\n\t'})
    _led.append("train.end", {"ok": True, "none": None, "big": 9007199254740991, "small": 1e-7})
    HEAD = _led.head
ORIGINAL = ORIGINAL_PATH.read_bytes()
PREFIXES = {b""} | {ORIGINAL[: i + 1] for i, c in enumerate(ORIGINAL) if c == 0x0A}
TARGET = WORK / "ledger.jsonl"


def _verifies(content: bytes, **expect: object) -> bool:
    TARGET.write_bytes(content)
    try:
        verify_ledger(TARGET, **expect)  # type: ignore[arg-type]
    except LedgerError:
        return False
    return True


def _edit(fdp: atheris.FuzzedDataProvider) -> bytes:
    content = bytearray(ORIGINAL)
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        pos = fdp.ConsumeIntInRange(0, len(content))
        op = fdp.ConsumeIntInRange(0, 2)
        size = fdp.ConsumeIntInRange(0, 16)
        if op == 0:
            content[pos:pos] = fdp.ConsumeBytes(size)
        elif op == 1:
            del content[pos : pos + size]
        else:
            new = fdp.ConsumeBytes(size)
            content[pos : pos + len(new)] = new
    return bytes(content)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    fdp = atheris.FuzzedDataProvider(data[1:])
    if data[0] & 1:
        _verifies(data[1:])  # may fail; must not crash
        return
    content = _edit(fdp)
    ok_signed = _verifies(content, expected_head=HEAD.head, expected_entries=HEAD.entries)
    if ok_signed != (content == ORIGINAL):
        raise AssertionError(f"verified against the head: {ok_signed}, but bytes changed: {content != ORIGINAL}")
    ok_alone = _verifies(content)
    if ok_alone != (content in PREFIXES):
        raise AssertionError(f"verified alone: {ok_alone}, but a whole-line prefix: {content in PREFIXES}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
