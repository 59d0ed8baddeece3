"""Fixtures for the audit-report tests: one real signed demo run per session (tests copy it to tamper)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from report_helpers import DemoRun


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    """``bastion demo`` exactly as a user runs it: a real tiny LoRA run, signed with a demo key."""
    out = tmp_path_factory.mktemp("report-demo") / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "demo", "--output-dir", str(out), "--steps", "4"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return DemoRun(run=out / "run", public_key=out / "keys" / "signing.pub", inputs=out / "inputs")


@pytest.fixture
def demo_copy(demo_run: DemoRun, tmp_path: Path) -> Path:
    """A private copy of the signed demo run (tests may tamper with it)."""
    dest = tmp_path / "run"
    shutil.copytree(demo_run.run, dest)
    return dest
