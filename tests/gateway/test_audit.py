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
