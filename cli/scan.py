"""``bastion scan``: run a dataset through a policy offline, exactly as the gateway would.

Prints what would be redacted or blocked, by record number and entity type (never the data itself).
Exit status: 0 = allow or redact, 1 = block, 2 = bad input or bad policy.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import click

from bastion.cli.progress import byte_progress
from bastion.errors import InputError
from bastion.policies import DEFAULT_MAX_LINE_BYTES, JsonlScanner, PolicyEngine, ScanSummary, load_policy
from bastion.policies.parallel import scan_file

CHUNK = 1024 * 1024


@contextmanager
def _output(path: Path | None) -> Iterator[IO[bytes] | None]:
    """Write to a temp file beside ``path`` and move it in place only on success (no partial files)."""
    if path is None:
        yield None
        return
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError("output folder does not exist", path=directory)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    ok = False
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
        ok = True
    finally:
        if not ok:
            Path(tmp).unlink(missing_ok=True)


@click.command()
@click.argument("file", metavar="FILE")
@click.option("--policy", "policy_source", required=True, help="Policy file, or pack:NAME for a bundled pack.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option(
    "--redacted-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the redacted JSONL here (written only if the whole input scans).",
)
@click.option(
    "--max-line-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_LINE_BYTES,
    show_default=True,
    help="Longest accepted line.",
)
@click.option("--no-progress", is_flag=True, help="Do not show a progress bar.")
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Scan the file in this many processes (0: one per CPU); the output and report are the same.",
)
def scan(
    file: str,
    policy_source: str,
    as_json: bool,
    redacted_out: Path | None,
    max_line_bytes: int,
    no_progress: bool,
    jobs: int,
) -> None:
    """Scan a JSONL FILE ('-' for stdin) against a policy: exit 0 allow/redact, 1 block, 2 bad input."""
    engine = PolicyEngine(load_policy(policy_source))
    source = "<stdin>" if file == "-" else file
    if jobs != 1:
        if file == "-":
            raise InputError(
                "--jobs needs a file: standard input cannot be cut into ranges",
                path=source,
                hint="save the input to a file first, or leave out --jobs",
            )
        summary = _scan_parallel(engine, file, jobs, redacted_out, max_line_bytes, no_progress)
    else:
        summary = _scan_stream(engine, file, source, redacted_out, max_line_bytes, no_progress)
    if as_json:
        payload = summary.as_dict()
        payload["policy"] = engine.policy.name
        if redacted_out is not None:
            payload["redacted_out"] = str(redacted_out)
        click.echo(json.dumps(payload, indent=2))
    else:
        _print_report(summary, engine, redacted_out)
    if summary.decision == "block":
        sys.exit(1)


def _scan_parallel(
    engine: PolicyEngine, file: str, jobs: int, redacted_out: Path | None, max_line_bytes: int, no_progress: bool
) -> ScanSummary:
    with (
        _open_input(file) as (_, total),
        _output(redacted_out) as out,
        byte_progress(total, f"scanning {Path(file).name}", enabled=not no_progress) as advance,
    ):
        return scan_file(
            engine,
            Path(file),
            jobs=jobs,
            out=out,
            source=file,
            temp_dir=None if redacted_out is None else redacted_out.parent,
            max_line_bytes=max_line_bytes,
            advance=advance,
        )


def _scan_stream(
    engine: PolicyEngine,
    file: str,
    source: str,
    redacted_out: Path | None,
    max_line_bytes: int,
    no_progress: bool,
) -> ScanSummary:
    scanner = JsonlScanner(engine, source=source, max_line_bytes=max_line_bytes)
    with _open_input(file) as (fh, total), _output(redacted_out) as out:
        with byte_progress(total, f"scanning {Path(source).name}", enabled=not no_progress) as advance:
            while True:
                chunk = fh.read(CHUNK)
                if not chunk:
                    break
                data = scanner.feed(chunk)
                if out is not None:
                    out.write(data)
                if advance is not None:
                    advance(len(chunk))
        data = scanner.finish()
        if out is not None:
            out.write(data)
    return scanner.summary


@contextmanager
def _open_input(file: str) -> Iterator[tuple[IO[bytes], int | None]]:
    if file == "-":
        yield sys.stdin.buffer, None
        return
    path = Path(file)
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise InputError("file not found", path=path) from None
    except IsADirectoryError:
        raise InputError("is a folder; give a JSONL file", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", path=path) from None
    with fh:
        yield fh, path.stat().st_size


def _print_report(summary: ScanSummary, engine: PolicyEngine, redacted_out: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    style = {"allow": "green", "redact": "yellow", "block": "bold red"}[summary.decision]
    console.print(
        f"[bold]{summary.source}[/bold]: {summary.records} records, {summary.findings} findings, "
        f"policy {engine.policy.name}: [{style}]{summary.decision.upper()}[/{style}]"
    )
    if summary.counts:
        totals = Table(title="findings by entity type", title_justify="left")
        totals.add_column("entity")
        for action in ("block", "redact", "allow"):
            totals.add_column(action, justify="right")
        for entity, per in sorted(summary.counts.items()):
            totals.add_row(entity, *(str(per.get(a, 0)) for a in ("block", "redact", "allow")))
        console.print(totals)
        records = Table(title="records", title_justify="left")
        for col in ("record", "line", "action", "entity types", "rules"):
            records.add_column(col)
        for d in summary.details:
            entities = ", ".join(f"{e} x{n}" if n > 1 else e for e, n in sorted(d.entities.items()))
            records.add_row(str(d.record), str(d.line), d.action, entities, ", ".join(d.rule_ids))
        console.print(records)
        if summary.details_truncated:
            console.print(f"(only the first {len(summary.details)} records with findings are listed)")
    if summary.blocked_records_total:
        listed = ", ".join(str(r) for r in summary.blocked_records[:50])
        more = " ..." if summary.blocked_records_total > 50 else ""
        console.print(f"blocked records ({summary.blocked_records_total}): {listed}{more}")
    console.print(f"classification after redaction: {summary.classification}")
    for up in engine.policy.upstreams:
        res = engine.check_residency(up.id, None, summary.classification)
        verdict = "may go to" if res.allowed else "may NOT go to"
        console.print(f"  {verdict} {up.id} ({up.jurisdiction}): {res.reason}")
    if redacted_out is not None:
        console.print(f"redacted output: {redacted_out} (sha256 {summary.output_sha256})")
