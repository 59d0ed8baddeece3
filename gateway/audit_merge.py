"""A deployment's audit logs checked together: one hash-chained, segmented log per replica (and worker).

:func:`find_logs` turns the locations an auditor names (state dirs, ``<state_dir>/audit``, one
replica's dir, an ``audit.jsonl``) into replica logs, named by their directory. :func:`check_logs`
verifies each one completely (every entry's hash and link, every segment's link to the one
before, see :mod:`bastion.gateway.audit_segments`) and compares the set against what the auditor
knew beforehand: ``expect`` (replica ids that must be there) and a ``checkpoint`` (entries and head
per replica, from an earlier ``bastion audit verify --json``). :func:`timeline` merges the verified
logs into one stream ordered by (time, replica id, position in that replica's log): deterministic,
whatever order the directories were named in.

What can be proven, and what cannot (also stated in docs/deploy.md):

* inside one log: an edited, inserted, deleted or reordered entry, and a removed, reordered or
  truncated *sealed* segment, break its chain and are reported with file and line;
* the end of a log (its last entries cut off, or the whole active segment removed) leaves a shorter
  chain that is still valid: only a checkpoint recorded earlier proves it (the log must still hold
  the recorded entry with the recorded hash);
* a whole replica directory deleted leaves no trace in the others: only ``expect`` (or a
  checkpoint naming it) detects it;
* a replica whose log ends well before the others' is reported (``lag``); it may have been stopped
  or it may have been cut: the log alone cannot say which;
* times are each replica's wall clock: the merged order is as good as the replicas' clock sync, and
  a replica whose clock went backwards is reported.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bastion.errors import LedgerError, LedgerVerificationError
from bastion.gateway.audit_segments import audit_active_path, sealed_segments, verify_audit
from bastion.gateway.replicas import AUDIT_SUBDIR
from bastion.provenance.ledger import GENESIS, read_entries

ACTIVE = "audit.jsonl"


@dataclass(frozen=True)
class ReplicaLog:
    replica: str
    directory: Path


@dataclass
class ReplicaResult:
    replica: str
    directory: Path
    ok: bool = False
    segments: int = 0
    entries: int = 0
    head: str = GENESIS
    first_time: str | None = None
    last_time: str | None = None
    problems: list[str] = field(default_factory=list)
    lag_s: float | None = None
    clock_regressions: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "replica": self.replica,
            "directory": str(self.directory),
            "ok": self.ok,
            "segments": self.segments,
            "entries": self.entries,
            "head": self.head,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "lag_s": self.lag_s,
            "clock_regressions": self.clock_regressions,
            "problems": self.problems,
        }


@dataclass
class SetReport:
    replicas: list[ReplicaResult]
    missing: list[str]
    lagging: list[str]
    max_lag_s: float

    @property
    def ok(self) -> bool:
        return not self.missing and all(r.ok for r in self.replicas)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "replicas": [r.as_json() for r in self.replicas],
            "missing": self.missing,
            "lagging": self.lagging,
            "max_lag_s": self.max_lag_s,
        }


def _is_log_dir(path: Path) -> bool:
    return (path / ACTIVE).is_file() or bool(sealed_segments(path / ACTIVE))


def find_logs(locations: Sequence[Path]) -> list[ReplicaLog]:
    """The replica logs under ``locations``, sorted by replica id; LedgerError if a location holds none
    or two logs carry the same replica id (rename one directory: the id is the directory name)."""
    found: dict[str, ReplicaLog] = {}
    for location in locations:
        if location.is_file():
            dirs = [location.parent]
        elif not location.is_dir():
            raise LedgerError(f"no audit log at {location}: it does not exist")
        elif _is_log_dir(location):
            # a state dir from before per-replica logs may hold both: its old log and audit/<replica>/
            sub = location / AUDIT_SUBDIR
            extra = sorted(p for p in sub.iterdir() if p.is_dir() and _is_log_dir(p)) if sub.is_dir() else []
            dirs = [location, *extra]
        else:
            base = location / AUDIT_SUBDIR if (location / AUDIT_SUBDIR).is_dir() else location
            dirs = sorted(p for p in base.iterdir() if p.is_dir() and _is_log_dir(p))
            if not dirs:
                raise LedgerError(
                    f"no audit log at {location}: no {ACTIVE} there, nor in its replica directories",
                    hint="name a gateway state dir, its audit/ directory or one replica's audit directory",
                )
        for d in dirs:
            log = ReplicaLog(d.name, d)
            other = found.get(log.replica)
            if other is not None and other.directory.resolve() != d.resolve():
                raise LedgerError(
                    f"two audit logs carry the replica id {log.replica!r}: {other.directory} and {d}",
                    hint="the replica id is the directory name; copy one of them under another name",
                )
            found[log.replica] = log
    return [found[k] for k in sorted(found)]


def _segment_files(directory: Path) -> list[Path]:
    active = audit_active_path(directory)
    files = [p for _, p in sealed_segments(active)]
    if active.exists():
        files.append(active)
    return files


def _entries(log: ReplicaLog) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position over all segments, entry) of a log, in order (read once more after verification)."""
    position = 0
    for path in _segment_files(log.directory):
        for _, entry in read_entries(path):
            yield position, entry
            position += 1


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def check_logs(
    logs: Sequence[ReplicaLog],
    *,
    expect: Sequence[str] = (),
    checkpoint: dict[str, tuple[int, str]] | None = None,
    max_lag_s: float = 3600.0,
) -> SetReport:
    """Verify every log and the set; never raises for a broken log (its problems are in the report)."""
    checkpoint = checkpoint or {}
    results = []
    for log in logs:
        res = ReplicaResult(log.replica, log.directory)
        results.append(res)
        try:
            head = verify_audit(log.directory)
        except LedgerVerificationError as err:
            res.problems.append(err.message)
            continue
        except LedgerError as err:
            res.problems.append(err.message)
            continue
        res.segments, res.entries, res.head = head.segments, head.entries, head.head
        want = checkpoint.get(log.replica)
        recorded_hash: str | None = None
        previous_time = ""
        for position, entry in _entries(log):
            stamp = str(entry["time"])
            if res.first_time is None:
                res.first_time = stamp
            if stamp < previous_time:
                res.clock_regressions += 1
            previous_time = max(previous_time, stamp)
            res.last_time = stamp
            if want is not None and position == want[0] - 1:
                recorded_hash = str(entry["hash"])
        res.ok = True
        if want is not None:
            entries, head_hash = want
            if res.entries < entries:
                res.ok = False
                res.problems.append(
                    f"the log holds {res.entries} entries but the checkpoint recorded {entries}: "
                    f"entries {res.entries + 1}..{entries} were cut off"
                )
            elif (recorded_hash or GENESIS) != head_hash:
                res.ok = False
                res.problems.append(
                    f"entry {entries} no longer has the hash the checkpoint recorded: the log was rewritten"
                )
    present = {r.replica for r in results}
    missing = sorted((set(expect) | set(checkpoint)) - present)
    last = [r.last_time for r in results if r.ok and r.last_time]
    lagging = []
    if last:
        newest = _seconds(max(last))
        for r in results:
            if r.ok and r.last_time:
                r.lag_s = round(newest - _seconds(r.last_time), 3)
                if r.lag_s > max_lag_s:
                    lagging.append(r.replica)
    return SetReport(results, missing, lagging, max_lag_s)


def timeline(logs: Sequence[ReplicaLog]) -> Iterator[dict[str, Any]]:
    """All entries of verified ``logs`` as one stream, ordered by (time, replica id, position).

    Each item: ``{"time", "replica", "position", "kind", "data", "hash"}``. A k-way merge of the
    per-replica streams (memory bounded by the number of replicas); the order is exactly by the key
    as long as no replica's clock went backwards (reported by :func:`check_logs`).
    """

    def keyed(log: ReplicaLog) -> Iterator[tuple[str, str, int, dict[str, Any]]]:
        for position, entry in _entries(log):
            yield str(entry["time"]), log.replica, position, entry

    for stamp, replica, position, entry in heapq.merge(*(keyed(log) for log in logs), key=lambda t: t[:3]):
        yield {
            "time": stamp,
            "replica": replica,
            "position": position,
            "kind": entry["kind"],
            "data": entry["data"],
            "hash": entry["hash"],
        }
