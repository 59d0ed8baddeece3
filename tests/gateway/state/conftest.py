"""Fixtures of the state-store tests: a store in a temp state dir, a fixed part key."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bastion.gateway.state import SQLStateStore, open_sqlite_store


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLStateStore]:
    s = open_sqlite_store(tmp_path / "state")
    try:
        yield s
    finally:
        s.close()
