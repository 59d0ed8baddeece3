"""``bastion ledger``: verify, show and repair hash-chained ledgers.

``verify`` exits 0 when the chain is intact (and matches ``--expect-head``/``--expect-entries`` when
given, or else the head recorded in a ``statement.json`` beside the ledger), 1 when it is broken,
naming the first offending line and why, and 2 when the file cannot be read at all. Without a head
to compare with, removing whole entries from the end cannot be detected, and ``verify`` says so.

``repair`` cuts a torn last line (an interrupted write) and records the cut in the ledger itself.
"""

from __future__ import annotations

import json
import re
import sys
from collections import deque
from pathlib import Path
from typing import Any

import click

from bastion.errors import LedgerError, LedgerVerificationError
from bastion.provenance.ledger import LedgerHead, read_entries, repair_ledger, verify_ledger
from bastion.provenance.statement import STATEMENT_NAME

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _check_head(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower()
    if not _HEX64.match(value):
        raise click.BadParameter("expected the 64-hex-digit SHA-256 head recorded in the run statement")
    return value


def _failure_dict(err: LedgerVerificationError) -> dict[str, Any]:
    # The message carries "path:line: " in front; the reason alone is more useful in JSON.
    reason = err.message.split(": ", 1)[1] if err.message.startswith(f"{err.path}:") else err.message
    return {"ok": False, "path": str(err.path), "line": err.line, "reason": reason, "hint": err.hint}


def check_ledger(
    path: Path, expected_head: str | None = None, expected_entries: int | None = None
) -> tuple[LedgerHead | None, LedgerVerificationError | None]:
    """Verify ``path``: (head, None) when intact, (None, error) when broken; unreadable files raise."""
    try:
        return verify_ledger(path, expected_head=expected_head, expected_entries=expected_entries), None
    except LedgerVerificationError as err:
        return None, err


@click.group("ledger")
def ledger() -> None:
    """Inspect and verify hash-chained ledgers (training run records, gateway audit logs)."""


@ledger.command("verify")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--expect-head",
    callback=_check_head,
    metavar="SHA256",
    help="Head hash recorded in the signed statement: detects truncation and later additions.",
)
@click.option(
    "--expect-entries", type=click.IntRange(min=0), metavar="N", help="Entry count recorded in the statement."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
def verify_command(file: Path, expect_head: str | None, expect_entries: int | None, as_json: bool) -> None:
    """Verify the hash chain of FILE; exit 1 and name the first broken line if it was tampered with.

    Without --expect-head/--expect-entries, the head recorded in a statement.json beside FILE (a run
    record's bastion/ folder) is checked, so that removed last entries are caught too.
    """
    source = "--expect-head/--expect-entries" if expect_head or expect_entries is not None else None
    note = None
    if source is None:
        recorded, note = statement_head(file)
        if recorded is not None:
            expect_head, expect_entries = recorded
            source = f"the head recorded in {file.parent / STATEMENT_NAME}"
    try:
        head, err = check_ledger(file, expect_head, expect_entries)
    except LedgerError as exc:  # unreadable: exit 2, and still JSON when JSON was asked for
        if not as_json:
            raise
        doc = {"ok": False, "path": str(file), "line": None, "reason": exc.message, "hint": exc.hint}
        click.echo(json.dumps(doc, indent=2))
        sys.exit(2)
    if err is not None:
        if as_json:
            click.echo(json.dumps({**_failure_dict(err), "head_checked_against": source}, indent=2))
        else:
            click.echo(f"FAILED: {err}", err=True)
            if source is not None and expect_head is not None:
                click.echo(f"  (checked against {source})", err=True)
        sys.exit(1)
    assert head is not None
    unchecked = note or (
        "no statement.json beside the ledger and no --expect-head: entries removed from the end cannot be"
        " detected; pass the head and entry count recorded in the signed statement"
    )
    if as_json:
        doc = {"ok": True, "path": str(file), "entries": head.entries, "head": head.head}
        doc["head_checked_against"] = source
        if source is None:
            doc["head_not_checked"] = unchecked
        click.echo(json.dumps(doc, indent=2))
    else:
        matched = f" (matches {source})" if source is not None and expect_head is not None else ""
        click.echo(f"OK: {file}: {head.entries} entries, head {head.head}{matched}")
        if source is None:
            click.echo(f"note: head not checked: {unchecked}", err=True)


def statement_head(ledger_path: Path) -> tuple[tuple[str, int | None] | None, str | None]:
    """The (head, entries) a ``statement.json`` beside the ledger records for it, or why there is none.

    The statement is read as is, not its signature checked: ``bastion verify`` checks that the
    statement is the signed one (and the ledger against it).
    """
    stmt = ledger_path.parent / STATEMENT_NAME
    if not stmt.is_file():
        return None, None
    try:
        doc = json.loads(stmt.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None, f"{stmt} cannot be read as JSON, so the head recorded there cannot be checked"
    pred = doc.get("predicate") if isinstance(doc, dict) else None
    led = pred.get("ledger") if isinstance(pred, dict) else None
    if not isinstance(led, dict):
        return None, f"{stmt} records no ledger, so there is no head to check against"
    recorded_path, head, entries = led.get("path"), led.get("head"), led.get("entries")
    if isinstance(recorded_path, str) and Path(recorded_path).name != ledger_path.name:
        return None, f"{stmt} records the ledger {recorded_path!r}, not {ledger_path.name!r}; head not checked"
    if not isinstance(head, str) or not _HEX64.match(head):
        return None, f"{stmt} records no valid ledger head, so the head cannot be checked"
    return (head, entries if isinstance(entries, int) and not isinstance(entries, bool) else None), None


@ledger.command("repair")
@click.argument("file", type=click.Path(path_type=Path))
def repair_command(file: Path) -> None:
    """Cut a torn last line off FILE (an interrupted write) and record the cut as a ledger.repair entry.

    Only a torn last line is cut, and only when every whole entry before it verifies; the entry
    records where, how many bytes and their SHA-256 (never their content). Any other damage is
    refused (exit 1): restore such a ledger from the signed run record instead.
    """
    try:
        done = repair_ledger(file)
    except LedgerVerificationError as err:
        click.echo(f"NOT REPAIRED: {err}", err=True)
        click.echo("  repair only cuts a torn last line; this ledger is damaged elsewhere", err=True)
        sys.exit(1)
    if done is None:
        head = verify_ledger(file)
        click.echo(f"nothing to repair: {file} ends with a whole entry ({head.entries} entries verify)")
        return
    click.echo(
        f"repaired {file}: cut {done.cut_bytes} bytes from byte {done.cut_at} on"
        f" (sha256 {done.cut_sha256}); recorded as entry {done.entry['seq']} ({done.entry['kind']}),"
        f" new head {done.entry['hash']}"
    )


def _summary(data: Any, width: int = 100) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


@ledger.command("show")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--tail", type=click.IntRange(min=1), default=None, metavar="N", help="Only the last N entries.")
@click.option("--kind", "kinds", multiple=True, metavar="KIND", help="Only entries of this kind (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON lines on stdout.")
def show_command(file: Path, tail: int | None, kinds: tuple[str, ...], as_json: bool) -> None:
    """Show the entries of FILE (sequence, time, kind, data) and whether the chain verifies."""
    shown: deque[tuple[int, dict[str, Any]]] = deque(maxlen=tail)
    read_error: LedgerVerificationError | None = None
    total = 0
    try:
        for lineno, entry in read_entries(file):
            total += 1
            if not kinds or entry.get("kind") in kinds:
                shown.append((lineno, entry))
    except LedgerVerificationError as exc:
        read_error = exc
    head, err = (None, read_error) if read_error is not None else check_ledger(file)

    if as_json:
        for _, entry in shown:
            click.echo(json.dumps(entry, ensure_ascii=False, sort_keys=True))
    else:
        from rich.console import Console
        from rich.table import Table

        console = Console(soft_wrap=True)
        if not console.is_terminal:
            console = Console(soft_wrap=True, width=100_000)
        table = Table(show_edge=False)
        for col in ("line", "seq", "time", "kind", "data"):
            table.add_column(col, no_wrap=col != "data", overflow="fold")
        for lineno, entry in shown:
            table.add_row(
                str(lineno),
                str(entry.get("seq", "?")),
                str(entry.get("time", "?")),
                str(entry.get("kind", "?")),
                _summary(entry.get("data")),
                end_section=False,
            )
        console.print(table, highlight=False, markup=False)
        console.print(f"{len(shown)} of {total} entries shown", highlight=False)
    if err is not None:
        click.echo(f"chain BROKEN: {err}", err=True)
        sys.exit(1)
    assert head is not None
    click.echo(f"chain OK: {head.entries} entries, head {head.head}", err=as_json)
