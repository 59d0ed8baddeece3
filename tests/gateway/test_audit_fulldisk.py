"""A full disk under the audit log: the short write is cut back, requests fail closed, the log recovers.

Two real ways to make write(2) come up short: a 64 KiB tmpfs (needs root to mount) and, without
root, RLIMIT_FSIZE in a child process (the kernel writes up to the limit, then refuses with EFBIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.gateway.audit import AuditLog, AuditUnavailable
from bastion.provenance.ledger import verify_ledger


def whole_lines(path: Path) -> bool:
    data = path.read_bytes()
    return data == b"" or data.endswith(b"\n")


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; test_short_write_under_a_file_size_limit covers this without it")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(directory: Path) -> Path:
    """Write a filler file until the file system is full."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as fh:
        while True:
            try:
                fh.write(b"\0" * 512)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return filler


def test_full_tmpfs(tiny_fs: Path) -> None:
    path = tiny_fs / "audit.jsonl"
    audit = AuditLog(path)
    try:
        check_full_tmpfs(audit, path, tiny_fs)
    finally:
        audit.close()
    entries = [json.loads(x) for x in path.read_text().splitlines()]
    assert [e["data"].get("n") for e in entries] == [1, 2, None, 3]  # None: the "audit_resumed" entry
    assert entries[2]["data"] == {"event": "audit_resumed", "failed_entries": 2}
    assert verify_ledger(path).entries == 4
    AuditLog(path).close()  # and the gateway starts again


def check_full_tmpfs(audit: AuditLog, path: Path, fs: Path) -> None:
    def record(data: dict[str, object]) -> None:
        asyncio.run(audit.record(data))

    record({"decision": "allow", "n": 1, "pad": ""})
    one = path.stat().st_size
    # a second entry that leaves ~40 bytes free in the file's first 4 KiB page
    record({"decision": "allow", "n": 2, "pad": "x" * (4096 - 40 - 2 * one)})
    before = path.stat().st_size
    assert 4096 - 60 < before < 4096
    filler = fill(fs)
    # larger than what is left in the audit file's last page: a short write, then ENOSPC
    with pytest.raises(AuditUnavailable) as err:
        record({"decision": "allow", "pad": "x" * 6000})
    assert "No space left on device" in err.value.message and "\n" not in err.value.message
    assert path.stat().st_size == before and whole_lines(path)
    assert not audit.available
    with pytest.raises(AuditUnavailable):
        asyncio.run(audit.ensure_available())  # pass-through routes refuse before forwarding
    assert path.stat().st_size == before and whole_lines(path)
    filler.unlink()
    asyncio.run(audit.ensure_available())
    assert audit.available
    record({"decision": "allow", "n": 3})


CHILD = r"""
import asyncio, json, os, resource, signal, sys
from pathlib import Path
from bastion.gateway.audit import AuditLog, AuditUnavailable

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
path = Path(sys.argv[1])
audit = AuditLog(path)
asyncio.run(audit.record({"decision": "allow", "n": 1}))
before = path.stat().st_size
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (before + 100, hard))
out = {"before": before}
try:
    asyncio.run(audit.record({"decision": "allow", "pad": "x" * 1000}))
    out["error"] = None
except AuditUnavailable as exc:
    out["error"] = exc.message
out["after_failure"] = path.stat().st_size
try:
    asyncio.run(audit.ensure_available())
    out["probe_while_full"] = "ok"
except AuditUnavailable:
    out["probe_while_full"] = "unavailable"
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
asyncio.run(audit.ensure_available())
asyncio.run(audit.record({"decision": "allow", "n": 2}))
audit.close()
print(json.dumps(out))
"""


def test_short_write_under_a_file_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    r = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["error"] is not None and "File too large" in out["error"]
    assert out["after_failure"] == out["before"]  # the partial line was cut back
    assert out["probe_while_full"] == "unavailable"
    assert whole_lines(path)
    entries = [json.loads(x)["data"] for x in path.read_text().splitlines()]
    assert [e.get("n") for e in entries] == [1, None, 2]
    assert verify_ledger(path).entries == 3
    with contextlib.closing(AuditLog(path)):
        pass
