"""``bastion ledger``: verify and show hash-chained ledgers.

``verify`` exits 0 when the chain is intact (and matches ``--expect-head``/``--expect-entries`` when
given), 1 when it is broken, naming the first offending line and why, and 2 when the file cannot be
read at all.
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
from bastion.provenance.ledger import LedgerHead, read_entries, verify_ledger

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
    """Verify the hash chain of FILE; exit 1 and name the first broken line if it was tampered with."""
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
            click.echo(json.dumps(_failure_dict(err), indent=2))
        else:
            click.echo(f"FAILED: {err}", err=True)
        sys.exit(1)
    assert head is not None
    if as_json:
        click.echo(json.dumps({"ok": True, "path": str(file), "entries": head.entries, "head": head.head}, indent=2))
    else:
        matched = " (matches the expected head)" if expect_head else ""
        click.echo(f"OK: {file}: {head.entries} entries, head {head.head}{matched}")


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
