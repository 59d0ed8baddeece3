"""``bastion audit``: verify the gateway's segmented audit logs, one replica's or a deployment's set.

``verify`` exits 0 when every segment's chain is intact and each segment links to the end of the
previous one, 1 when something is broken (naming the segment file, the line and why) or an
expected replica is missing, and 2 when there is no audit log to read. ``merge`` does the same
checks and writes the logs of all replicas as one timeline.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bastion.errors import ConfigError, LedgerVerificationError

if TYPE_CHECKING:
    from bastion.gateway.audit_merge import SetReport


@click.group("audit")
def audit() -> None:
    """Verify the gateway's audit logs (all segments, all replicas) and merge them into one timeline."""


_EXPECT = click.option(
    "--expect",
    "expect",
    multiple=True,
    metavar="REPLICA_ID",
    help="A replica whose log must be present (repeat it; a deleted replica directory is only detected this way).",
)
_CHECKPOINT = click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="JSON from an earlier `bastion audit verify --json`: every replica's log must still hold the "
    "entries and head recorded there (detects a cut-off end of a log).",
)
_MAX_LAG = click.option(
    "--max-lag",
    "max_lag_s",
    type=click.FloatRange(min=0),
    default=3600.0,
    show_default=True,
    help="Report a replica whose last entry is this many seconds older than the newest replica's.",
)


def _load_checkpoint(path: Path | None) -> dict[str, tuple[int, str]]:
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return {str(r["replica"]): (int(r["entries"]), str(r["head"])) for r in doc["replicas"]}
    except OSError as exc:
        raise ConfigError(f"cannot read the checkpoint {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"the checkpoint {path} is not the JSON of `bastion audit verify --json` over a set of replicas",
            hint="record one with: bastion audit verify STATE_DIR... --json > checkpoint.json",
        ) from None


def _check(
    locations: Sequence[Path], expect: Sequence[str], checkpoint: Path | None, max_lag_s: float
) -> tuple[Any, SetReport]:
    from bastion.gateway.audit_merge import check_logs, find_logs

    logs = find_logs(locations)
    report = check_logs(logs, expect=expect, checkpoint=_load_checkpoint(checkpoint), max_lag_s=max_lag_s)
    return logs, report


def _print_report(report: SetReport) -> None:
    for r in report.replicas:
        if r.ok:
            line = f"OK {r.replica}: {r.segments} segment(s), {r.entries} entries, head {r.head[:16]}…"
            if r.last_time:
                line += f", last entry {r.last_time}"
            if r.lag_s:
                line += f" ({r.lag_s:g} s before the newest replica)"
            if r.clock_regressions:
                line += f"; its clock went backwards {r.clock_regressions} time(s)"
            click.echo(line, err=True)
        else:
            for problem in r.problems:
                click.echo(f"FAILED {r.replica}: {problem}", err=True)
    for name in report.missing:
        click.echo(f"MISSING {name}: no audit log for this expected replica (deleted, or not named)", err=True)
    for name in report.lagging:
        click.echo(
            f"NOTE {name}: its log ends more than {report.max_lag_s:g} s before the newest replica's "
            "(stopped, idle, or cut off: only a checkpoint can tell)",
            err=True,
        )
    total = sum(r.entries for r in report.replicas)
    verdict = "all intact" if report.ok else "NOT intact"
    click.echo(f"{len(report.replicas)} replica log(s), {total} entries: {verdict}", err=True)


@audit.command("verify")
@click.argument("locations", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@_EXPECT
@_CHECKPOINT
@_MAX_LAG
def verify_command(
    locations: tuple[Path, ...], as_json: bool, expect: tuple[str, ...], checkpoint: Path | None, max_lag_s: float
) -> None:
    """Verify audit logs: one log (a dir holding audit.jsonl, or the file), or a deployment's set of replica
    logs (state dirs or their audit/ directories, one log per replica directory)."""
    from bastion.gateway.audit_segments import verify_audit

    single = len(locations) == 1 and not expect and checkpoint is None
    one = locations[0]
    if single and (
        one.is_file() or not one.exists() or ((one / "audit.jsonl").exists() and not (one / "audit").is_dir())
    ):
        location = locations[0]
        try:
            head = verify_audit(location)
        except LedgerVerificationError as err:
            if as_json:
                out = {"ok": False, "path": str(err.path), "line": err.line, "reason": err.message, "hint": err.hint}
                click.echo(json.dumps(out, indent=2))
            else:
                click.echo(f"FAILED: {err}", err=True)
            sys.exit(1)
        if as_json:
            out2 = {"ok": True, "segments": head.segments, "entries": head.entries, "head": head.head}
            click.echo(json.dumps(out2, indent=2))
        else:
            click.echo(f"OK: {location}: {head.segments} segment(s), {head.entries} entries, head {head.head}")
        return
    _, report = _check(locations, expect, checkpoint, max_lag_s)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report)
    if not report.ok:
        sys.exit(1)


@audit.command("merge")
@click.argument("locations", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the timeline (JSON lines) here instead of stdout (written whole, or not at all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON on stdout (with --out).")
@_EXPECT
@_CHECKPOINT
@_MAX_LAG
def merge_command(
    locations: tuple[Path, ...],
    out: Path | None,
    as_json: bool,
    expect: tuple[str, ...],
    checkpoint: Path | None,
    max_lag_s: float,
) -> None:
    """Verify a set of replica audit logs together and write them as one timeline.

    Entries are ordered by time, then replica id, then position in that replica's log (the same order
    for the same logs, whatever order they are named in); each line is
    {"time", "replica", "position", "kind", "data", "hash"}. Nothing is written when a log is broken or
    an expected replica is missing (exit 1).
    """
    from bastion.gateway.audit_merge import timeline

    if as_json and out is None:
        raise click.UsageError("--json prints the report on stdout: give --out FILE for the timeline")
    logs, report = _check(locations, expect, checkpoint, max_lag_s)
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        _print_report(report)
    if not report.ok:
        sys.exit(1)
    lines = (json.dumps(item, sort_keys=True, ensure_ascii=False) + "\n" for item in timeline(logs))
    if out is None:
        for line in lines:
            sys.stdout.write(line)
        sys.stdout.flush()
        return
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.writelines(lines)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(f"cannot write the timeline to {out}: {exc.strerror or exc}") from None
