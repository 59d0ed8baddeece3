"""The registry's database: SQLite by default (one file), PostgreSQL when given a ``postgresql://`` URL.

The engine mechanics (placeholders, BLOB/BYTEA, write transactions, versioned migrations) are the
gateway state store's, from :mod:`bastion.sqlstore`; this module words errors for the registry and
holds the writes. Every write is one transaction: an artifact and all its rows, or a dataset and all
its record digests (committed only when they rebuild the Merkle root they are indexed under).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.errors import BastionError
from bastion.provenance.merkle import EMPTY_ROOT
from bastion.provenance.registry.proofs import CHUNK, DIGEST_SIZE, chunk_roots, tree_blob
from bastion.provenance.registry.schema import MIGRATIONS, SCHEMA_TABLE
from bastion.sqlstore import is_postgres_url
from bastion.sqlstore.connections import Connections, SingleConnection, read_rows, transaction
from bastion.sqlstore.dialect import Dialect, SQLiteBase
from bastion.sqlstore.migrations import apply_migrations

ENV_LOCATION = "BASTION_REGISTRY"
"""Environment variable naming the registry (a SQLite file path or a ``postgresql://`` URL)."""
DB_NAME = "registry.sqlite3"
BUSY_TIMEOUT_S = 30.0
CACHE_MIB = 64
"""SQLite page cache of a registry connection: record-digest ingest inserts into a large index."""
BATCH_CHUNKS = 512
"""Chunks of record digests written per batch (512 x 1024 records)."""
# pg_advisory_xact_lock key of registry migrations: the first 8 bytes of sha256("bastion run registry schema")
MIGRATION_LOCK_KEY = 0x5A0C_91E4_27B3_D618


class RegistryError(BastionError):
    """The registry database cannot be opened, read or written, or refuses what it was given."""


def default_location() -> str:
    """``$BASTION_REGISTRY``, else ``$XDG_DATA_HOME/bastion/registry.sqlite3`` (``~/.local/share/...``)."""
    env = os.environ.get(ENV_LOCATION, "").strip()
    if env:
        return env
    base = os.environ.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return str(Path(base) / "bastion" / DB_NAME)


def describe_location(location: str) -> str:
    if is_postgres_url(location):
        from bastion.sqlstore.postgres import safe_url

        return safe_url(location)
    return location


class _SQLiteDialect(SQLiteBase):
    def describe(self, exc: Exception, where: str) -> RegistryError:
        msg = str(exc)
        low = msg.lower()
        if "not a database" in low or "malformed" in low:
            return RegistryError(
                f"run registry {where} is not a usable SQLite database ({msg})",
                hint="pass --db with another file, or move this one away",
            )
        if "locked" in low or "busy" in low:
            return RegistryError(
                f"run registry {where} stayed locked by another process: {msg}",
                hint="another `bastion registry add` holds a long transaction on it; retry when it is done",
            )
        if "readonly" in low or "read-only" in low or "unable to open" in low:
            return RegistryError(f"run registry {where} cannot be written: {msg}", hint="fix permissions or pass --db")
        return RegistryError(f"run registry {where} failed: {msg}")


def _postgres_dialect() -> Dialect:
    import psycopg

    from bastion.sqlstore.postgres import PostgresBase, first_line

    class _PostgresDialect(PostgresBase):
        migration_lock = f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"

        def describe(self, exc: Exception, where: str) -> RegistryError:
            if isinstance(exc, psycopg.OperationalError):
                return RegistryError(
                    f"run registry {where} is unavailable: {first_line(exc)}",
                    hint="check that PostgreSQL is running and the --db URL is right",
                )
            sqlstate = getattr(exc, "sqlstate", None)
            code = f" (SQLSTATE {sqlstate})" if sqlstate else ""
            return RegistryError(
                f"run registry {where} failed{code}: {first_line(exc)}",
                hint="check the PostgreSQL server log; the registry's user needs CREATE on the database's schema",
            )

    return _PostgresDialect()


# ---------------------------------------------------------------------------- what gets written


@dataclass(frozen=True)
class Link:
    relation: str
    """``base_model``, ``tokenizer``, ``merge.base_model``, ``merge.adapter`` (by digest); ``resumed_from``,
    ``previous_run``, ``record_of`` (by run id)."""
    target: str
    target_kind: str
    """``artifact`` (a directory manifest digest), ``file`` (one file's SHA-256) or ``run`` (a run id)."""
    name: str | None = None


@dataclass(frozen=True)
class DatasetUse:
    name: str
    role: str
    sha256: str
    records: int | None
    merkle_root: str | None
    size: int | None
    format: str | None
    parent_sha256: str | None


@dataclass(frozen=True)
class ArtifactEntry:
    """One run record as the registry stores it (built by :mod:`bastion.provenance.registry.ingest`)."""

    record_id: str
    artifact_digest: str
    run_id: str
    kind: str
    framework: str | None
    base_model: str | None
    base_model_name: str | None
    tokenizer: str | None
    signer: dict[str, Any] | None
    verified: bool
    failures: tuple[str, ...]
    started_at: str | None
    finished_at: str | None
    ledger_head: str | None
    ledger_entries: int | None
    path: str
    predicate: dict[str, Any]
    files: tuple[tuple[str, str], ...] = ()
    links: tuple[Link, ...] = ()
    uses: tuple[DatasetUse, ...] = field(default_factory=tuple)
    trust: dict[str, Any] | None = None
    """The trust material that verified the record (pinned; ``None`` for a record indexed unverified)."""


def ds_key(sha256: str) -> int:
    """The dataset's integer key: its digest's first 8 bytes as a signed 64-bit integer."""
    return int.from_bytes(bytes.fromhex(sha256)[:8], "big", signed=True)


def prefix_key(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big", signed=True)


# ---------------------------------------------------------------------------- the store


class Registry:
    """An open registry; use :func:`open_registry`. Close it (or use it as a context manager) when done."""

    def __init__(self, db: Connections, dialect: Dialect, where: str, clock: Any = time.time) -> None:
        self.db = db
        self.dialect = dialect
        self.where = where
        self.clock = clock

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(*self.dialect.errors):
            self.db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Any]:
        try:
            with transaction(self.db, self.dialect) as cur:
                yield cur
        except self.dialect.errors as exc:
            raise self.dialect.describe(exc, self.where) from None

    def rows(self, query: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of one read-only ``query`` (``?`` placeholders)."""
        try:
            return read_rows(self.db, self.dialect, query, params)
        except self.dialect.errors as exc:
            raise self.dialect.describe(exc, self.where) from None

    def _x(self, cur: Any, query: str, params: Sequence[Any] = ()) -> Any:
        cur.execute(self.dialect.sql(query), tuple(params))
        return cur

    def _many(self, cur: Any, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        if self.dialect.name == "postgresql":
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            return
        marks = ", ".join("?" for _ in columns)
        cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    # ------------------------------------------------------------------ artifacts

    def put_artifact(self, entry: ArtifactEntry) -> str:
        """Index one run record; ``added``, ``unchanged`` (same record, same verdict) or ``updated`` (a new
        verdict, or a new record of the same run in the same directory, which replaces the old one)."""
        now = int(self.clock() * 1000)
        with self._tx() as cur:
            found = self._x(
                cur, "SELECT verified, failures FROM reg_artifacts WHERE record_id = ?", (entry.record_id,)
            ).fetchone()
            failures = json.dumps(list(entry.failures))
            if found is not None and bool(found[0]) == entry.verified and found[1] == failures:
                # A record indexed before trust was pinned (schema 1) gets its material now.
                if (
                    entry.trust is not None
                    and not self._x(cur, "SELECT 1 FROM reg_trust WHERE record_id = ?", (entry.record_id,)).fetchone()
                ):
                    self._pin(cur, entry.record_id, entry.trust, now)
                return "unchanged"
            # The directory's earlier record of the same run (re-sealed since, e.g. after a merge) is replaced:
            # the registry describes each directory as its current, verified record says.
            stale = self._x(
                cur,
                "SELECT record_id FROM reg_artifacts WHERE path = ? AND run_id = ? AND kind = ? AND record_id <> ?",
                (entry.path, entry.run_id, entry.kind, entry.record_id),
            ).fetchall()
            for record_id in [entry.record_id, *(r[0] for r in stale)]:
                for table in ("reg_artifacts", "reg_files", "reg_links", "reg_uses", "reg_trust"):
                    self._x(cur, f"DELETE FROM {table} WHERE record_id = ?", (record_id,))
            self._x(
                cur,
                "INSERT INTO reg_artifacts (record_id, artifact_digest, run_id, kind, framework, base_model, "
                "base_model_name, tokenizer, signer, verified, failures, started_at, finished_at, ledger_head, "
                "ledger_entries, path, predicate, indexed_at) VALUES (" + ", ".join("?" * 18) + ")",
                (
                    entry.record_id,
                    entry.artifact_digest,
                    entry.run_id,
                    entry.kind,
                    entry.framework,
                    entry.base_model,
                    entry.base_model_name,
                    entry.tokenizer,
                    None if entry.signer is None else json.dumps(entry.signer, sort_keys=True),
                    1 if entry.verified else 0,
                    failures,
                    entry.started_at,
                    entry.finished_at,
                    entry.ledger_head,
                    entry.ledger_entries,
                    entry.path,
                    json.dumps(entry.predicate, sort_keys=True),
                    now,
                ),
            )
            many = cur.executemany
            many(
                self.dialect.sql("INSERT INTO reg_files (record_id, name, sha256) VALUES (?, ?, ?)"),
                [(entry.record_id, name, sha) for name, sha in dict(entry.files).items()],
            )
            many(
                self.dialect.sql(
                    "INSERT INTO reg_links (record_id, relation, target, target_kind, name) VALUES (?, ?, ?, ?, ?)"
                ),
                [
                    (entry.record_id, link.relation, link.target, link.target_kind, link.name)
                    for link in {(x.relation, x.target): x for x in entry.links}.values()
                ],
            )
            many(
                self.dialect.sql(
                    "INSERT INTO reg_uses (record_id, position, name, role, sha256, records, merkle_root, size, "
                    "format, parent_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    (entry.record_id, i, u.name, u.role, u.sha256, u.records, u.merkle_root, u.size, u.format,
                     u.parent_sha256)
                    for i, u in enumerate(entry.uses)
                ],
            )  # fmt: skip
            if entry.trust is not None:
                self._pin(cur, entry.record_id, entry.trust, now)
            for u in entry.uses:
                self._x(
                    cur,
                    "INSERT INTO reg_dataset_refs (sha256, name, records) VALUES (?, ?, ?) "
                    "ON CONFLICT (sha256) DO NOTHING",
                    (u.sha256, u.name, u.records),
                )
        return "added" if found is None and not stale else "updated"

    def _pin(self, cur: Any, record_id: str, material: dict[str, Any], now: int) -> None:
        self._x(
            cur,
            "INSERT INTO reg_trust (record_id, material, pinned_at) VALUES (?, ?, ?)",
            (record_id, json.dumps(material, sort_keys=True), now),
        )

    def pinned_trust(self, record_id: str) -> dict[str, Any] | None:
        """The trust material pinned for ``record_id`` at indexing, or ``None`` when none was."""
        rows = self.rows("SELECT material FROM reg_trust WHERE record_id = ?", (record_id,))
        if not rows:
            return None
        material: dict[str, Any] = json.loads(rows[0][0])
        return material

    # ------------------------------------------------------------------ record digests

    def has_records(self, sha256: str) -> bool:
        return bool(self.rows("SELECT 1 FROM reg_datasets WHERE sha256 = ?", (sha256,)))

    def put_records(self, sha256: str, merkle_root: str, digests: Iterable[bytes], *, source: str) -> bool:
        """Index a dataset's record digests (raw 32-byte SHA-256, in file order); ``False`` if already indexed.

        The digests must rebuild ``merkle_root`` (the root the run records sign): otherwise nothing is
        written and :class:`RegistryError` says so.
        """
        if self.has_records(sha256):
            return False
        key = ds_key(sha256)
        roots: list[bytes] = []
        count = 0

        def chunks() -> Iterator[tuple[int, int, bytes]]:
            nonlocal count
            for index, leaves, root in chunk_roots(digests):
                roots.append(root)
                count += len(leaves) // DIGEST_SIZE
                yield key, index, leaves

        def records(chunk_rows: list[tuple[int, int, bytes]]) -> Iterator[tuple[int, int, int]]:
            for _, index, leaves in chunk_rows:
                base = index * CHUNK
                for j in range(0, len(leaves), DIGEST_SIZE):
                    yield prefix_key(leaves[j : j + DIGEST_SIZE]), key, base + j // DIGEST_SIZE

        now = int(self.clock() * 1000)
        with self._tx() as cur:
            clash = self._x(cur, "SELECT sha256 FROM reg_datasets WHERE ds_key = ?", (key,)).fetchone()
            if clash is not None:
                raise RegistryError(
                    f"dataset {sha256[:16]}… shares its 64-bit key with the indexed dataset {clash[0][:16]}…",
                    hint="this registry cannot index both; report it (a 64-bit prefix collision of SHA-256 digests)",
                )
            # Chunks are written in batches; each batch's record rows follow, sorted by their index key so that
            # the inserts walk the index once per batch instead of jumping around it (bounded memory at 10M).
            batch: list[tuple[int, int, bytes]] = []
            for row in chunks():
                batch.append(row)
                if len(batch) >= BATCH_CHUNKS:
                    self._many(cur, "reg_chunks", ("ds_key", "chunk", "leaves"), batch)
                    self._many(cur, "reg_records", ("prefix", "ds_key", "pos"), sorted(records(batch)))
                    batch = []
            if batch:
                self._many(cur, "reg_chunks", ("ds_key", "chunk", "leaves"), batch)
                self._many(cur, "reg_records", ("prefix", "ds_key", "pos"), sorted(records(batch)))
            tree = tree_blob(roots)
            got = tree[-DIGEST_SIZE:].hex() if roots else EMPTY_ROOT  # the last level is the root
            if got != merkle_root:
                raise RegistryError(
                    f"the {count} record digests given for dataset {sha256[:16]}… rebuild the Merkle root "
                    f"{got[:16]}…, not the signed {merkle_root[:16]}…; nothing was indexed",
                    hint="pass the dataset file the run really read (its SHA-256 must match the record)",
                )
            self._x(
                cur,
                "INSERT INTO reg_datasets (sha256, ds_key, merkle_root, records, chunk_size, chunk_tree, source, "
                "indexed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (sha256, key, merkle_root, count, CHUNK, tree, source, now),
            )
        return True


def open_registry(location: str | os.PathLike[str] | None = None) -> Registry:
    """The registry at ``location`` (default :func:`default_location`), schema migrated on the way in."""
    loc = default_location() if location is None else os.fspath(location)
    if is_postgres_url(loc):
        return _open_postgres(loc)
    return _open_sqlite(Path(loc))


def _migrate(conn: Any, dialect: Dialect, where: str) -> None:
    def too_new(found: int, latest: int) -> RegistryError:
        return RegistryError(
            f"run registry {where} has schema version {found}, newer than this Bastion knows ({latest})",
            hint="use the newer Bastion that wrote it",
        )

    apply_migrations(
        conn,
        dialect,
        MIGRATIONS,
        table=SCHEMA_TABLE,
        now_ms=int(time.time() * 1000),
        too_new=too_new,
        formats={"without_rowid": " WITHOUT ROWID" if dialect.name == "sqlite" else ""},
    )


def _open_sqlite(path: Path) -> Registry:
    dialect = _SQLiteDialect()
    where = str(path)
    if path.exists() and not path.is_file():
        raise RegistryError(f"run registry {where} is not a regular file", hint="pass --db with a file path")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RegistryError(f"cannot create the folder of run registry {where}: {exc.strerror or exc}") from None
    try:
        conn = sqlite3.connect(where, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise dialect.describe(exc, where) from None
    try:
        conn.execute("PRAGMA journal_mode=WAL").fetchone()
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute(f"PRAGMA cache_size=-{CACHE_MIB * 1024}")
        _migrate(conn, dialect, where)
    except sqlite3.Error as exc:
        conn.close()
        raise dialect.describe(exc, where) from None
    except BaseException:
        conn.close()
        raise
    return Registry(SingleConnection(conn), dialect, where)


def _open_postgres(url: str) -> Registry:
    from bastion.extras import require

    require("postgres", feature="a PostgreSQL run registry")
    import psycopg

    from bastion.sqlstore.postgres import safe_url

    where = safe_url(url)
    dialect = _postgres_dialect()
    try:
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10, application_name="bastion-registry")
    except psycopg.Error as exc:
        raise dialect.describe(exc, where) from None
    except Exception as exc:  # an invalid URL
        raise RegistryError(f"--db is not a usable PostgreSQL URL ({type(exc).__name__})") from None
    try:
        _migrate(conn, dialect, where)
    except psycopg.Error as exc:
        conn.close()
        raise dialect.describe(exc, where) from None
    except BaseException:
        conn.close()
        raise
    return Registry(SingleConnection(conn), dialect, where)


__all__ = [
    "DB_NAME",
    "ENV_LOCATION",
    "ArtifactEntry",
    "DatasetUse",
    "Link",
    "Registry",
    "RegistryError",
    "default_location",
    "describe_location",
    "ds_key",
    "open_registry",
    "prefix_key",
]
