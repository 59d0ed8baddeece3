"""Run the real ``bastion`` entry point in-process, as the CLI tests need it."""

from __future__ import annotations

import pytest

from bastion.cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``bastion ARGS`` through :func:`bastion.cli.main.main`: (exit status, stdout, stderr)."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
