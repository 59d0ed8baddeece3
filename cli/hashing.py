"""``bastion hash``: digests of a file, a model directory or a dataset.

The JSON form (``--json``) is the same shape the run statement uses: in-toto digests
(``{"sha256": hex}``), per-file subjects for directories, and for datasets the record count and
Merkle root over the canonical per-record digests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bastion.cli.progress import byte_progress
from bastion.errors import InputError
from bastion.provenance.datasets import hash_dataset
from bastion.provenance.hashing import hash_directory, hash_file, total_size

PROGRESS_MIN_BYTES = 32 * 1024 * 1024
"""Inputs smaller than this hash in well under a second: no progress bar for them."""


def _short(digest: str | None, n: int = 16) -> str:
    return "-" if not digest else digest[:n] + "…"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def _print_table(title: str, columns: list[str], rows: list[list[str]], footer: list[tuple[str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    if not console.is_terminal:
        # Piped output: never fold names or digests to an assumed 80-column width.
        console = Console(soft_wrap=True, width=100_000)
    table = Table(title=title, title_justify="left", show_edge=False)
    for c in columns:
        table.add_column(c, no_wrap=True)
    for r in rows:
        table.add_row(*r)
    # markup=False: file and dataset names are data, and "[bold]x[red].bin" is a valid file name.
    if rows:
        console.print(table, markup=False, highlight=False)
    for key, value in footer:
        console.print(f"[bold]{key}:[/bold] ", end="", highlight=False)
        console.print(value, markup=False, highlight=False)


def hash_result(
    path: Path,
    *,
    dataset: bool,
    role: str,
    exclude: tuple[str, ...],
    workers: int | None,
    show_progress: bool,
    proof: int | None = None,
) -> dict[str, Any]:
    """The ``--json`` document for ``path`` (also used by the human-readable output)."""
    if not path.exists():
        what = "symbolic link points to a missing file" if path.is_symlink() else "path not found"
        raise InputError(what, path=path, hint="check the path; it may have been moved or deleted")
    if not path.is_dir() and not path.is_file():
        raise InputError("not a regular file or directory (a pipe, socket or device)", path=path)
    if dataset:
        if path.is_dir():
            raise InputError(
                "--dataset expects a data file (JSONL, JSON array, Parquet...), not a directory",
                path=path,
                hint="hash each data file, or drop --dataset to hash the directory per file",
            )
        size = path.stat().st_size
        with byte_progress(size, path.name, enabled=show_progress, min_bytes=PROGRESS_MIN_BYTES) as advance:
            d = hash_dataset(path, role=role, progress=advance)
        out: dict[str, Any] = {"kind": "dataset", "path": str(path), **d.as_dict()}
        if proof is not None:
            if d.records is not None and not 0 <= proof < d.records:
                raise InputError(
                    f"record index {proof} is out of range: the dataset has {d.records} records (0-based indexes)",
                    path=path,
                )
            p = d.proof(proof)
            out["proof"] = {
                "index": p.index,
                "size": p.size,
                "record_sha256": d.record_digests[proof],
                "leaf": p.leaf,
                "path": list(p.path),
                "root": p.root,
                "verified": p.verify(),
            }
        return out
    if path.is_dir():
        size = total_size(path, exclude=exclude)
        with byte_progress(size, path.name, enabled=show_progress, min_bytes=PROGRESS_MIN_BYTES) as advance:
            dd = hash_directory(path, exclude=exclude, workers=workers, progress=advance)
        return {
            "kind": "directory",
            "path": str(path),
            "digest": {"sha256": dd.sha256},
            "size": dd.size,
            "files": [{**f.as_subject(), "size": f.size} for f in dd.files],
        }
    size = path.stat().st_size
    with byte_progress(size, path.name, enabled=show_progress, min_bytes=PROGRESS_MIN_BYTES) as advance:
        fd = hash_file(path, progress=advance)
    return {"kind": "file", "path": str(path), "name": fd.name, "digest": {"sha256": fd.sha256}, "size": fd.size}


@click.command("hash")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout instead of a table.")
@click.option(
    "--dataset",
    is_flag=True,
    help="Hash PATH as a dataset: per-record canonical digests and their Merkle root (JSONL or JSON array).",
)
@click.option(
    "--role",
    type=click.Choice(["train", "eval", "preference"]),
    default=None,
    help="Dataset role to record (implies --dataset; default train).",
)
@click.option(
    "--proof",
    type=click.IntRange(min=0),
    default=None,
    metavar="INDEX",
    help="Also print the Merkle inclusion proof of record INDEX (0-based; implies --dataset).",
)
@click.option("--exclude", multiple=True, metavar="NAME", help="Directory entries to skip (repeatable).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Threads for directories (default: CPUs).")
@click.option("--progress/--no-progress", default=True, help="Progress bar on stderr for large inputs (TTY only).")
def hash_command(
    path: Path,
    as_json: bool,
    dataset: bool,
    role: str | None,
    proof: int | None,
    exclude: tuple[str, ...],
    workers: int | None,
    progress: bool,
) -> None:
    """Hash a file, a model directory (per file + manifest digest) or a dataset (records + Merkle root)."""
    result = hash_result(
        path,
        dataset=dataset or role is not None or proof is not None,
        role=role or "train",
        exclude=exclude,
        workers=workers,
        show_progress=progress,
        proof=proof,
    )
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    sha = result["digest"]["sha256"]
    if result["kind"] == "file":
        click.echo(f"{sha}  {result['name']}  ({_human(result['size'])})")
    elif result["kind"] == "directory":
        rows = [[f["name"], _human(f["size"]), f["digest"]["sha256"]] for f in result["files"]]
        _print_table(
            str(path),
            ["file", "size", "sha256"],
            rows,
            [
                ("files", f"{len(rows)} ({_human(result['size'])})"),
                ("manifest sha256", sha),
            ],
        )
    else:
        footer = [
            ("dataset", f"{result['name']} (role {result['role']}, format {result['format']})"),
            ("size", _human(result["size"])),
            ("file sha256", sha),
        ]
        if "records" in result:
            footer += [("records", str(result["records"])), ("merkle root", result["merkle_root"])]
        else:
            footer.append(("records", f"not digested per record ({result['format']} is hashed as a whole file)"))
        if "proof" in result:
            pr = result["proof"]
            footer += [
                (f"record {pr['index']} sha256", pr["record_sha256"]),
                (f"inclusion proof ({len(pr['path'])} hashes, leaf first)", " ".join(pr["path"]) or "(none)"),
                ("proof verifies against the merkle root", "yes" if pr["verified"] else "NO"),
            ]
        _print_table(str(path), [], [], footer)
