"""A deployment's replica audit logs verified together and merged into one timeline (`bastion audit`)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

from bastion.cli.main import main as bastion_main
from bastion.gateway.audit import AuditLog
from bastion.gateway.audit_merge import check_logs, find_logs
from bastion.gateway.audit_segments import sealed_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        bastion_main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def deployment(tmp_path: Path) -> Path:
    """Two replicas (r1 with segments) and a worker, written in interleaved order: 13 + 10 + 3 entries."""
    audit = tmp_path / "state" / "audit"
    logs = {
        "r1": AuditLog(audit / "r1" / "audit.jsonl", segment_max_entries=4),
        "r2": AuditLog(audit / "r2" / "audit.jsonl"),
        "r2.w1": AuditLog(audit / "r2.w1" / "audit.jsonl"),
    }

    async def main() -> None:
        for i in range(10):
            await logs["r1"].record({"decision": "allow", "i": i})
            await logs["r2"].record({"decision": "block", "i": i})
            if i % 4 == 0:
                await logs["r2.w1"].record({"decision": "allow", "i": i})

    asyncio.run(main())
    for log in logs.values():
        log.close()
    return tmp_path / "state"


def test_merge_orders_all_replicas_into_one_deterministic_timeline(
    deployment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = deployment / "audit"
    code, _, err = run(capsys, "audit", "merge", str(deployment), "--out", str(deployment / "a.jsonl"))
    assert code == 0, err
    # named in another order, one by one: the same bytes
    names = [str(audit / "r2.w1"), str(audit / "r1"), str(audit / "r2")]
    code, _, _ = run(capsys, "audit", "merge", *names, "--out", str(deployment / "b.jsonl"))
    assert code == 0
    a = (deployment / "a.jsonl").read_bytes()
    assert a == (deployment / "b.jsonl").read_bytes()
    items = [json.loads(line) for line in a.decode().splitlines()]
    r1_segment_headers = 3  # segments of 4 entries, headers included: 4 + (1+3) + (1+3) + (1): 10 decisions
    assert len(items) == 10 + r1_segment_headers + 10 + 3
    keys = [(x["time"], x["replica"], x["position"]) for x in items]
    assert keys == sorted(keys)
    decisions = [(x["replica"], x["data"]["i"]) for x in items if x["kind"] == "gateway.decision"]
    assert decisions[:3] == [("r1", 0), ("r2", 0), ("r2.w1", 0)]  # written in that order
    assert [i for r, i in decisions if r == "r1"] == list(range(10))
    assert "3 replica log(s), 26 entries: all intact" in err
    code, out, _ = run(capsys, "audit", "merge", str(deployment))  # to stdout
    assert code == 0 and out.encode() == a


def test_an_edited_entry_fails_the_set_and_nothing_is_written(
    deployment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segment = sealed_path(deployment / "audit" / "r1" / "audit.jsonl", 2)
    segment.write_text(segment.read_text().replace('"i":5', '"i":50', 1))
    code, _, err = run(capsys, "audit", "merge", str(deployment), "--out", str(deployment / "t.jsonl"))
    assert code == 1 and not (deployment / "t.jsonl").exists()
    assert f"FAILED r1: {segment}:" in err and "edited" in err and "NOT intact" in err
    code, out, _ = run(capsys, "audit", "verify", str(deployment), "--json")
    report = json.loads(out)
    assert code == 1 and not report["ok"]
    assert [r["ok"] for r in report["replicas"]] == [False, True, True]


def test_a_deleted_replica_is_caught_only_by_expect_or_a_checkpoint(
    deployment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, checkpoint, _ = run(capsys, "audit", "verify", str(deployment), "--json")
    assert code == 0
    (deployment / "checkpoint.json").write_text(checkpoint)
    shutil.rmtree(deployment / "audit" / "r2.w1")
    code, _, err = run(capsys, "audit", "verify", str(deployment))
    assert code == 0  # what the remaining logs can prove: they are intact
    code, _, err = run(capsys, "audit", "verify", str(deployment), "--expect", "r1", "--expect", "r2.w1")
    assert code == 1 and "MISSING r2.w1" in err
    code, _, err = run(capsys, "audit", "verify", str(deployment), "--checkpoint", str(deployment / "checkpoint.json"))
    assert code == 1 and "MISSING r2.w1" in err


def test_a_cut_off_end_is_caught_only_by_a_checkpoint(deployment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, checkpoint, _ = run(capsys, "audit", "verify", str(deployment), "--json")
    (deployment / "checkpoint.json").write_text(checkpoint)
    active = deployment / "audit" / "r2" / "audit.jsonl"
    lines = active.read_text().splitlines(keepends=True)
    active.write_text("".join(lines[:-2]))  # the last two entries removed: the chain is still valid
    code, _, _ = run(capsys, "audit", "verify", str(deployment))
    assert code == 0
    code, _, err = run(capsys, "audit", "verify", str(deployment), "--checkpoint", str(deployment / "checkpoint.json"))
    assert code == 1 and "FAILED r2: the log holds 8 entries but the checkpoint recorded 10" in err
    # the log grew after the checkpoint, but its recorded part was rewritten: also caught
    logs = find_logs([deployment])
    report = check_logs(logs, checkpoint={"r1": (3, "0" * 64)})
    assert not report.ok and "no longer has the hash the checkpoint recorded" in report.replicas[0].problems[0]


def test_a_replica_ending_earlier_is_reported(deployment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    later = AuditLog(deployment / "audit" / "r2" / "audit.jsonl")
    asyncio.run(later.record({"decision": "allow", "i": 10}))  # r2 writes the newest entry
    later.close()
    code, out, _ = run(capsys, "audit", "verify", str(deployment), "--max-lag", "0", "--json")
    report = json.loads(out)
    assert code == 0  # a note, not a failure: the log alone cannot tell stopped from cut off
    assert report["lagging"] == ["r1", "r2.w1"]
    code, _, err = run(capsys, "audit", "verify", str(deployment), "--max-lag", "0")
    assert code == 0 and "NOTE r1: its log ends more than 0 s before the newest replica's" in err
    assert report["replicas"][1]["lag_s"] == 0


def test_set_errors_are_one_line(tmp_path: Path, deployment: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "elsewhere" / "r1"
    shutil.copytree(deployment / "audit" / "r1", other)
    code, _, err = run(capsys, "audit", "verify", str(deployment), str(other))
    assert code == 2 and "two audit logs carry the replica id 'r1'" in err and "Traceback" not in err
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "audit", "merge", str(tmp_path / "empty"))
    assert code == 2 and "no audit log at" in err
    (tmp_path / "bad.json").write_text("{}")
    code, _, err = run(capsys, "audit", "verify", str(deployment), "--checkpoint", str(tmp_path / "bad.json"))
    assert code == 2 and "is not the JSON of `bastion audit verify --json`" in err


def test_a_state_dir_with_a_log_from_before_replica_dirs_is_checked_whole(
    deployment: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = AuditLog(deployment / "audit.jsonl")  # written by a gateway before per-replica logs
    asyncio.run(old.record({"decision": "allow", "i": -1}))
    old.close()
    code, out, _ = run(capsys, "audit", "verify", str(deployment), "--json")
    assert code == 0
    assert [r["replica"] for r in json.loads(out)["replicas"]] == ["r1", "r2", "r2.w1", "state"]
