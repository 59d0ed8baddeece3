"""The audit log's segments on disk, and their verification as one chain.

The active segment is the configured audit path (``audit.jsonl``); when it reaches the configured
size or entry count it is sealed by renaming it to ``audit.000001.jsonl`` (``audit.000002.jsonl``, …)
and a new active segment starts. Each segment is an ordinary hash-chained ledger
(:mod:`bastion.provenance.ledger`) whose first entry is a header::

    {"kind": "audit.segment", "data": {"segment": 3, "entries_before": 2048,
     "previous": {"entries": 1024, "head": "<hash of segment 2's last entry>"}}, ...}

(the first segment has none), so segment N+1 is chained to segment N's head: an edited, removed,
reordered or truncated sealed segment breaks the chain at the next segment's header. Start-up reads
only the active segment (or, right after a rotation that a crash interrupted, the last sealed one):
start-up time does not grow with history. ``verify_audit`` reads them all, in order.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import LedgerError, LedgerVerificationError
from bastion.provenance.ledger import GENESIS, verify_ledger

SEGMENT_KIND = "audit.segment"


def sealed_path(active: Path, index: int) -> Path:
    return active.with_name(f"{active.stem}.{index:06d}{active.suffix}")


def sealed_segments(active: Path) -> list[tuple[int, Path]]:
    """(index, path) of the sealed segments next to ``active``, by index (a directory listing, no reads)."""
    pattern = re.compile(re.escape(active.stem) + r"\.(\d{6,})" + re.escape(active.suffix) + "$")
    found = []
    if active.parent.is_dir():
        for p in active.parent.iterdir():
            m = pattern.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    return sorted(found)


def first_entry(path: Path) -> dict[str, Any] | None:
    """The first entry of a segment (one line read), or None for an empty file."""
    with open(path, "rb") as fh:
        line = fh.readline()
    if not line:
        return None
    try:
        entry = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LedgerVerificationError("line is not valid JSON", path=path, line=1) from None
    if not isinstance(entry, dict):
        raise LedgerVerificationError("line is not a ledger entry (JSON object)", path=path, line=1)
    return entry


def segment_header(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if entry is None or entry.get("kind") != SEGMENT_KIND or not isinstance(entry.get("data"), dict):
        return None
    data: dict[str, Any] = entry["data"]
    return data


@dataclass(frozen=True)
class AuditHead:
    """Where a verified audit log ends: segments, entries over all segments, hash of the last entry."""

    segments: int
    entries: int
    head: str


def audit_active_path(location: Path) -> Path:
    """``location`` is the active segment itself, or a directory holding ``audit.jsonl``."""
    return location / "audit.jsonl" if location.is_dir() else location


def verify_audit(location: Path) -> AuditHead:
    """Verify every segment and the links between them; raise LedgerVerificationError at the first break."""
    active = audit_active_path(location)
    segments = sealed_segments(active)
    if active.exists():
        segments.append((segments[-1][0] + 1 if segments else 1, active))
    if not segments:
        raise LedgerError(f"no audit log at {active} (and no sealed segments next to it)")
    hint = "the audit log was modified after it was written; restore it from a backup"
    total, prev_entries, prev_head = 0, 0, None
    for position, (index, path) in enumerate(segments, start=1):
        if index != position:
            raise LedgerVerificationError(
                f"segment {position} is missing (found segment {index} in its place)", path=path, line=1, hint=hint
            )
        if path == active and path.stat().st_size == 0:
            continue  # a rotation interrupted before the new header: nothing was written to it
        head = verify_ledger(path)
        header = segment_header(first_entry(path))
        if header is None:
            if position > 1:
                raise LedgerVerificationError(
                    f"segment {position} does not start with a segment header chained to segment {position - 1}",
                    path=path,
                    line=1,
                    hint=hint,
                )
        else:
            expected_prev = None if position == 1 else {"entries": prev_entries, "head": prev_head}
            if header.get("segment") != position or header.get("previous") != expected_prev:
                raise LedgerVerificationError(
                    f"segment header does not link to the end of segment {position - 1} "
                    "(a segment was edited, truncated, removed or reordered)"
                    if position > 1
                    else "first segment's header names a previous segment",
                    path=path,
                    line=1,
                    hint=hint,
                )
            if header.get("entries_before") != total:
                raise LedgerVerificationError(
                    f"segment header counts {header.get('entries_before')} earlier entries, found {total}",
                    path=path,
                    line=1,
                    hint=hint,
                )
        total += head.entries
        prev_entries, prev_head = head.entries, head.head
    # only an empty active segment (a log opened but never written to): no entries, the genesis head
    return AuditHead(segments=len(segments), entries=total, head=prev_head if prev_head is not None else GENESIS)
