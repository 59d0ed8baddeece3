"""The audit log: durable before record() returns, outcome wording, fail-closed errors, start-up checks."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import LedgerError
from bastion.gateway.audit import (
    FORWARDED,
    FORWARDED_NO_ANSWER,
    REFUSED_BEFORE_FORWARDING,
    AuditLog,
    AuditUnavailable,
)
from bastion.provenance.ledger import verify_ledger


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_record_returns_after_the_entry_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(path.resolve()):
            events.append("fsync")

    monkeypatch.setattr(os, "fsync", fsync)

    async def main() -> None:
        entry = await audit.record({"decision": "allow", "file_id": "file-1"}, outcome=FORWARDED)
        events.append("returned")
        assert entry is not None and entry["data"]["outcome"] == "forwarded"
        assert lines(path)[-1]["hash"] == entry["hash"]  # on disk when record() returned

    asyncio.run(main())
    audit.close()
    assert events == ["fsync", "returned"]


def test_outcome_wording(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")

    async def main() -> None:
        for outcome in (FORWARDED, FORWARDED_NO_ANSWER, REFUSED_BEFORE_FORWARDING):
            await audit.record({"decision": "x"}, outcome=outcome)
        with pytest.raises(ValueError, match="unknown audit outcome 'sent'"):
            await audit.record({"decision": "x"}, outcome="sent")  # type: ignore[arg-type]

    asyncio.run(main())
    audit.close()
    assert [e["data"]["outcome"] for e in lines(tmp_path / "audit.jsonl")] == [
        "forwarded",
        "forwarded_no_answer",
        "refused_before_forwarding",
    ]


def test_unrepresentable_entry_is_refused_without_touching_the_log(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")

    async def main() -> None:
        with pytest.raises(LedgerError, match="not representable"):
            await audit.record({"bad": float("nan")})
        await audit.record({"good": 1})

    asyncio.run(main())
    audit.close()
    assert verify_ledger(tmp_path / "audit.jsonl").entries == 1
    assert audit.available


def test_closed_log_refuses(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl")
    audit.close()
    with pytest.raises(AuditUnavailable, match="closed"):
        asyncio.run(audit.record({"x": 1}))


def test_torn_last_line_at_start_up_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path)
    asyncio.run(audit.record({"x": 1}))
    audit.close()
    with open(path, "ab") as fh:
        fh.write(b'{"data":{"x":2},"hash":"ab')  # a crash mid-write
    with pytest.raises(AuditUnavailable) as err:
        AuditLog(path)
    assert "\n" not in err.value.message and "last line is incomplete" in err.value.message
    assert f"bastion ledger repair {path}" in str(err.value.hint)


def test_unusable_audit_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(AuditUnavailable, match="cannot be created"):
        AuditLog(tmp_path / "file" / "audit.jsonl")


KILLED_WRITER = r"""
import asyncio, sys
from pathlib import Path
from bastion.gateway.audit import AuditLog, FORWARDED

audit = AuditLog(Path(sys.argv[1]), segment_max_entries=40)

async def one(i: int) -> None:
    await audit.record({"decision": "allow", "file_id": f"file-{i}"}, outcome=FORWARDED)
    print(f"file-{i}", flush=True)  # what the client would be told, only after record() returned

async def main() -> None:
    i = 0
    while True:  # 8 concurrent requests at a time (group commits), until killed
        await asyncio.gather(*(one(i + k) for k in range(8)))
        i += 8

asyncio.run(main())
"""


def test_every_outcome_told_to_a_client_survives_kill_9(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from bastion.gateway.audit_segments import sealed_segments, verify_audit

    path = tmp_path / "audit.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    told = []
    for line in proc.stdout:  # let it run until 200 ids were handed out, then kill it mid-stream
        told.append(line.strip())
        if len(told) == 200:
            proc.send_signal(signal.SIGKILL)
            break
    rest, _ = proc.communicate(timeout=60)
    told += [x for x in rest.splitlines() if x.strip()]
    assert proc.returncode == -signal.SIGKILL
    verify_audit(tmp_path)  # every segment intact and chained, even after kill -9 mid-rotation traffic
    logged = set()
    for _, p in [*sealed_segments(path), (0, path)]:
        if not p.exists():
            continue  # killed between sealing a segment and starting the next: start-up resumes from there
        logged |= {json.loads(x)["data"].get("file_id") for x in p.read_text().splitlines()}
    assert set(told) <= logged and len(told) >= 200
    AuditLog(path).close()  # and it starts again
    verify_audit(tmp_path)
