"""``bastion audit``: verify the gateway's segmented audit log.

``verify`` exits 0 when every segment's chain is intact and each segment links to the end of the
previous one, 1 when something is broken (naming the segment file, the line and why), and 2 when
there is no audit log to read.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bastion.errors import LedgerVerificationError


@click.group("audit")
def audit() -> None:
    """Verify the gateway's audit log (all segments, in order)."""


@audit.command("verify")
@click.argument("location", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def verify_command(location: Path, as_json: bool) -> None:
    """Verify LOCATION: the gateway's state dir (or audit dir) holding audit.jsonl, or the audit.jsonl itself."""
    from bastion.gateway.audit_segments import verify_audit

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
