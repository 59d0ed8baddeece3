"""Helpers shared by the audit-report tests (plain code; fixtures live in conftest.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DemoRun:
    """A signed ``bastion demo`` run: its output directory, the demo public key and the demo inputs."""

    run: Path
    public_key: Path
    inputs: Path
