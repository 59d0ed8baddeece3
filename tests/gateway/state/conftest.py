"""Fixtures of the state-store tests: a store on each backend (SQLite state dir, PostgreSQL schema), a part key.

PostgreSQL: the run creates its own database (``bastion_test_<pid>_<random>``) on the server of
``$BASTION_TEST_POSTGRES`` (default: the local server, user postgres) and drops it at the end; each
test gets a fresh schema in it. Without a reachable server the PostgreSQL cases are skipped, or FAIL
when ``BASTION_REQUIRE_POSTGRES=1`` (what ``.ci/run`` sets).
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from pg_support import Backend, PgServer, PostgresBackend, SqliteBackend, pg_server_or_skip
from state_support import StoreFactory

from bastion.gateway.state import SQLStateStore


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(32)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = pg_server_or_skip()
    try:
        yield server
    finally:
        server.drop()


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty schema in the run's database, as a URL whose search_path points at it."""
    server: PgServer = request.getfixturevalue("pg_server")
    return server.new_schema_url()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every behavioural test runs against both backends."""
    b: Backend
    if request.param == "sqlite":
        b = SqliteBackend(tmp_path / "state")
    else:
        b = PostgresBackend(request.getfixturevalue("pg_url"))
    try:
        yield b
    finally:
        b.close_all()


@pytest.fixture
def open_store(backend: Backend) -> StoreFactory:
    """``open_store(**options)``: another store on this test's location (same database and parts)."""
    return backend.open


@pytest.fixture
def store(backend: Backend) -> SQLStateStore:
    return backend.open()
