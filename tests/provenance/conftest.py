"""Fixtures for the provenance core tests: deterministic data and a truly unreadable file."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest


def _det_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


@pytest.fixture
def det_bytes() -> Callable[..., bytes]:
    """``det_bytes(n, seed=0)``: ``n`` pseudo-random bytes, the same on every run."""
    return _det_bytes


@pytest.fixture
def make_tree(tmp_path: Path) -> Callable[..., Path]:
    """Create a directory from ``{"relative/name": content}`` and return its path."""

    def make(files: dict[str, bytes], name: str = "tree") -> Path:
        root = tmp_path / name
        root.mkdir()
        for rel, content in files.items():
            p = root / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(content)
        return root

    return make


def _run_without_read_permission(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a Python process that cannot read files whose mode forbids it.

    As an ordinary user ``chmod 000`` is enough. root ignores file modes, so there the child runs
    with the DAC-override capabilities removed from its bounding set (``setpriv``), which makes the
    kernel enforce the mode bits for it as well: a real EACCES, not a mocked one.
    """
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


@pytest.fixture
def run_unprivileged() -> Callable[[str], subprocess.CompletedProcess[str]]:
    """``run_unprivileged(code)``: run Python code in a child that honours file mode bits."""
    return _run_without_read_permission
