"""Fixtures of the state-store tests: a store in a temp state dir, a fixed part key."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from bastion.gateway.state import SQLStateStore, open_sqlite_store


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


# One entry per backend: behaviour tests run against each (the PostgreSQL backend adds itself here).
BACKENDS: dict[str, Callable[..., SQLStateStore]] = {
    "sqlite": lambda location, **options: open_sqlite_store(location, **options),
}


@pytest.fixture(params=sorted(BACKENDS))
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., SQLStateStore]]:
    """``open_store(**options)``: a store on this test's location; every store opened is closed at the end."""
    backend = BACKENDS[request.param]
    opened: list[SQLStateStore] = []

    def factory(**options: Any) -> SQLStateStore:
        s = backend(tmp_path / "state", **options)
        opened.append(s)
        return s

    yield factory
    for s in opened:
        s.close()


@pytest.fixture
def store(open_store: Callable[..., SQLStateStore]) -> SQLStateStore:
    return open_store()
