"""The backends the state-store tests run against, and the run's own PostgreSQL database."""

from __future__ import annotations

import os
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bastion.gateway.state import SQLStateStore, open_sqlite_store

ENV_URL = "BASTION_TEST_POSTGRES"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
REQUIRE_ENV = "BASTION_REQUIRE_POSTGRES"


def _url(info: dict[str, Any], dbname: str) -> str:
    user = f"{info['user']}@" if info.get("user") else ""
    host = info.get("host") or "127.0.0.1"
    port = info.get("port") or 5432
    return f"postgresql://{user}{host}:{port}/{dbname}"


class PgServer:
    """The run's database on the test server: created at the start of the session, dropped at its end."""

    def __init__(self, admin_url: str) -> None:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        self.admin_url = admin_url
        self.info = conninfo_to_dict(admin_url)
        self.dbname = f"bastion_test_{os.getpid()}_{secrets.token_hex(4)}"
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        self.url = _url(self.info, self.dbname)

    def url_for(self, schema: str) -> str:
        return f"{self.url}?options=-csearch_path%3D{schema}"

    def new_schema_url(self) -> str:
        """A fresh empty schema in the run's database, as a URL whose search_path is that schema."""
        import psycopg

        schema = f"s_{secrets.token_hex(6)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        return self.url_for(schema)

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.dbname}" WITH (FORCE)')


def pg_server_or_skip() -> PgServer:
    """The test server, or skip (FAIL with BASTION_REQUIRE_POSTGRES=1) saying why it cannot be used."""
    admin_url = os.environ.get(ENV_URL, DEFAULT_ADMIN_URL)
    reason = ""
    try:
        import psycopg
    except ImportError:
        reason = "psycopg is not installed (pip install 'bastion-provenance[postgres]')"
    else:
        try:
            return PgServer(admin_url)
        except psycopg.Error as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            reason = f"PostgreSQL at {_url(psycopg.conninfo.conninfo_to_dict(admin_url), '')} is not usable: {first}"
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(
            f"{REQUIRE_ENV}=1 but {reason}; start it (pg_ctlcluster ... main start) or point ${ENV_URL} at one",
            pytrace=False,
        )
    pytest.skip(f"{reason}; set {REQUIRE_ENV}=1 to make this a failure")


class Backend:
    """Opens stores on one location (a SQLite state dir or a PostgreSQL schema); closes them at teardown."""

    name = ""

    def __init__(self) -> None:
        self.opened: list[SQLStateStore] = []

    @property
    def location(self) -> str:
        """What a worker process is given to open the same store."""
        raise NotImplementedError

    def _open(self, part_key: bytes | None, **kw: Any) -> SQLStateStore:
        raise NotImplementedError

    def open(self, *, part_key: bytes | None = None, **kw: Any) -> SQLStateStore:
        s = self._open(part_key, **kw)
        self.opened.append(s)
        return s

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on the store's database directly (as an operator or a test would)."""
        raise NotImplementedError

    def close_all(self) -> None:
        for s in self.opened:
            s.close()


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, state_dir: Path) -> None:
        super().__init__()
        self.state_dir = state_dir

    @property
    def location(self) -> str:
        return str(self.state_dir)

    def _open(self, part_key: bytes | None, **kw: Any) -> SQLStateStore:
        return open_sqlite_store(self.state_dir, part_key=part_key, **kw)

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.state_dir / "state.sqlite3") as db:
            return list(db.execute(query.replace("%s", "?"), params).fetchall())


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.key = secrets.token_bytes(32)  # PostgreSQL stores need a configured key

    @property
    def location(self) -> str:
        return self.url

    def _open(self, part_key: bytes | None, **kw: Any) -> SQLStateStore:
        from bastion.gateway.state.postgres import open_postgres_store

        return open_postgres_store(self.url, part_key=part_key or self.key, **kw)

    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return list(cur.fetchall()) if cur.description else []
