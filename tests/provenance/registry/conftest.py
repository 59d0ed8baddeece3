"""Fixtures of the registry tests: real signed runs (built once per session), a registry on each backend.

PostgreSQL: a fresh schema in the session's database on ``$BASTION_TEST_POSTGRES`` (default: the local
server), as the gateway state tests do; skipped without a server, a failure with BASTION_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[2] / "gateway" / "state"))

from lineage_runs import LineageRuns, build
from pg_support import PgServer, pg_server_or_skip


@pytest.fixture(scope="session")
def lineage_runs(tmp_path_factory: pytest.TempPathFactory) -> LineageRuns:
    return build(tmp_path_factory.mktemp("lineage"))


@pytest.fixture(scope="session")
def registry_pg_server() -> Iterator[PgServer]:
    server = pg_server_or_skip()
    try:
        yield server
    finally:
        server.drop()


@pytest.fixture(params=["sqlite", "postgres"])
def registry_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh registry location on each backend (a SQLite file, or a PostgreSQL schema URL)."""
    if request.param == "sqlite":
        return str(tmp_path / "registry" / "registry.sqlite3")
    server: PgServer = request.getfixturevalue("registry_pg_server")
    return server.new_schema_url()
