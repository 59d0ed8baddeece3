"""Audit segments: rotation, chaining between segments, start-up reads one segment, `bastion audit verify`."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.cli.main import main as bastion_main
from bastion.errors import LedgerVerificationError
from bastion.gateway.audit import AuditLog, AuditUnavailable, audit_lock_path
from bastion.gateway.audit_segments import sealed_path, sealed_segments, verify_audit

_opened: list[str] | None = None


def _hook(event: str, args: tuple[object, ...]) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | Path):
        _opened.append(str(args[0]))


sys.addaudithook(_hook)


class OpenCounter:
    def __enter__(self) -> list[str]:
        global _opened
        _opened = []
        return _opened

    def __exit__(self, *exc: object) -> None:
        global _opened
        _opened = None


def write(audit: AuditLog, n: int, start: int = 0) -> None:
    async def main() -> None:
        for i in range(start, start + n):
            await audit.record({"decision": "allow", "i": i})

    asyncio.run(main())


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    audit = AuditLog(tmp_path / "audit.jsonl", segment_max_entries=5)
    write(audit, 23)
    audit.close()
    yield tmp_path


def test_rotation_by_entries_chains_segments(log_dir: Path) -> None:
    active = log_dir / "audit.jsonl"
    assert [i for i, _ in sealed_segments(active)] == [1, 2, 3, 4, 5]
    head = verify_audit(log_dir)
    # 23 decisions + a header in each segment after the first
    assert head.segments == 6 and head.entries == 23 + 5
    decisions = []
    for _, p in [*sealed_segments(active), (6, active)]:
        decisions += [json.loads(x)["data"].get("i") for x in p.read_text().splitlines()]
    assert [d for d in decisions if d is not None] == list(range(23))
    header = json.loads((sealed_path(active, 2)).read_text().splitlines()[0])
    first_seg_last = json.loads(sealed_path(active, 1).read_text().splitlines()[-1])
    assert header["kind"] == "audit.segment"
    previous = {"entries": 5, "head": first_seg_last["hash"]}
    assert header["data"] == {"segment": 2, "entries_before": 5, "previous": previous}


def test_rotation_by_size(tmp_path: Path) -> None:
    audit = AuditLog(tmp_path / "audit.jsonl", segment_max_bytes=1000)
    write(audit, 30)
    audit.close()
    sealed = sealed_segments(tmp_path / "audit.jsonl")
    assert len(sealed) >= 3
    assert all(p.stat().st_size < 1000 + 400 for _, p in sealed)  # sealed right after passing the limit
    assert verify_audit(tmp_path).entries == 30 + len(sealed)


def test_start_up_reads_only_the_active_segment(log_dir: Path) -> None:
    active = log_dir / "audit.jsonl"
    write_more = AuditLog(active, segment_max_entries=5)  # now 6 segments of history
    write(write_more, 40, start=23)
    write_more.close()
    assert len(sealed_segments(active)) == 15
    with OpenCounter() as opened:
        audit = AuditLog(active, segment_max_entries=5)
    lock = str(audit_lock_path(active))  # opened to be locked, never read
    assert {p for p in opened if p.startswith(str(log_dir)) and p != lock} == {str(active)}
    assert audit.segments_read == [active]
    write(audit, 1, start=63)  # and the chain continues from there
    audit.close()
    assert verify_audit(log_dir).entries == 64 + 15


def test_interrupted_rotation_resumes_from_the_last_sealed_segment(log_dir: Path) -> None:
    active = log_dir / "audit.jsonl"
    # a crash right after sealing: the active segment is gone (or empty)
    active.rename(sealed_path(active, 6))
    with OpenCounter() as opened:
        audit = AuditLog(active, segment_max_entries=5)
    skip = {str(log_dir), str(audit_lock_path(active))}  # the dir is opened to fsync it, the lock to lock it
    files = {p for p in opened if p.startswith(str(log_dir)) and p not in skip}
    assert files == {str(sealed_path(active, 6)), str(active)}
    write(audit, 2, start=23)
    audit.close()
    assert verify_audit(log_dir).segments == 7
    assert verify_audit(active).entries == verify_audit(log_dir).entries


def test_edited_sealed_segment_is_detected(log_dir: Path) -> None:
    p = sealed_path(log_dir / "audit.jsonl", 2)
    p.write_text(p.read_text().replace('"i":7', '"i":8'))
    with pytest.raises(LedgerVerificationError, match="edited") as err:
        verify_audit(log_dir)
    assert err.value.path == p


def test_truncated_sealed_segment_breaks_the_next_header(log_dir: Path) -> None:
    p = sealed_path(log_dir / "audit.jsonl", 3)
    p.write_text("".join(p.read_text().splitlines(keepends=True)[:-1]))  # last whole entry removed
    with pytest.raises(LedgerVerificationError, match="does not link to the end of segment 3") as err:
        verify_audit(log_dir)
    assert err.value.path == sealed_path(log_dir / "audit.jsonl", 4) and err.value.line == 1


def test_removed_or_swapped_segments_are_detected(log_dir: Path) -> None:
    active = log_dir / "audit.jsonl"
    s2, s3 = sealed_path(active, 2), sealed_path(active, 3)
    tmp = log_dir / "swap"
    s2.rename(tmp)
    s3.rename(s2)
    tmp.rename(s3)
    with pytest.raises(LedgerVerificationError, match="does not link"):
        verify_audit(log_dir)
    s2.unlink()
    with pytest.raises(LedgerVerificationError, match="segment 2 is missing"):
        verify_audit(log_dir)


def test_cli_audit_verify(log_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def run(*args: str) -> tuple[int, str, str]:
        try:
            bastion_main(list(args))
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    code, out, _ = run("audit", "verify", str(log_dir))
    assert code == 0 and "6 segment(s), 28 entries" in out
    code, out, _ = run("audit", "verify", str(log_dir), "--json")
    assert code == 0 and json.loads(out)["entries"] == 28
    p = sealed_path(log_dir / "audit.jsonl", 4)
    p.write_text(p.read_text().replace('"decision":"allow"', '"decision":"block"', 1))
    code, _, err = run("audit", "verify", str(log_dir))
    assert code == 1 and f"{p}:" in err and "edited" in err and "Traceback" not in err
    code, _, err = run("audit", "verify", str(log_dir / "nothing-here"))
    assert code == 2 and "no audit log at" in err


def test_malformed_segment_header_is_a_clear_error(log_dir: Path) -> None:
    from bastion.gateway.audit import AuditUnavailable
    from bastion.provenance.ledger import Ledger

    active = log_dir / "audit.jsonl"
    active.unlink()
    with Ledger(active, fsync="never") as forged:  # a chain-valid file whose header lacks its fields
        forged.append("audit.segment", {"segment": "six"})
    with pytest.raises(AuditUnavailable, match="malformed segment header"):
        AuditLog(active)
    with pytest.raises(LedgerVerificationError, match="does not link"):
        verify_audit(log_dir)


def test_a_second_writer_of_the_same_audit_dir_is_refused(tmp_path: Path) -> None:
    first = AuditLog(tmp_path / "audit.jsonl")
    try:
        with pytest.raises(AuditUnavailable) as err:
            AuditLog(tmp_path / "audit.jsonl")
        assert "another gateway process is writing the audit log in" in err.value.message
        assert "--replica-id" in (err.value.hint or "")
    finally:
        first.close()
    AuditLog(tmp_path / "audit.jsonl").close()  # released on close: the next process may take it
