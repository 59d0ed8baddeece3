"""A byte-count progress bar for long-running CLI commands (hashing, scanning)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def byte_progress(
    total: int | None, label: str, *, enabled: bool = True, min_bytes: int = 0
) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr that yields ``advance(n_bytes)``, or ``None`` when it would be noise.

    Shown only when stderr is a terminal and ``total`` is known and at least ``min_bytes``; stdout is
    never touched, so ``--json`` output stays machine-readable with the bar on screen.
    """
    if not enabled or not total or total < min_bytes or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(label, total=total)

        def advance(n: int) -> None:
            progress.advance(task, n)

        yield advance
