"""Errors of the scan engine."""

from __future__ import annotations

from pathlib import Path

from bastion.errors import InputError


class ScanError(InputError):
    """The JSONL input cannot be scanned: invalid UTF-8, a line that is not JSON, a line over the size
    limit, or no records at all. ``line`` is the 1-based line number (None for the whole input).
    The message never contains the offending data."""

    def __init__(
        self,
        message: str,
        *,
        source: str | Path | None = None,
        line: int | None = None,
        record: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, path=source, line=line, hint=hint)
        self.source = None if source is None else str(source)
        self.record = record
