"""The registry's tables (migrations applied by :func:`bastion.sqlstore.migrations.apply_migrations`).

``reg_artifacts``  one row per indexed run record (a run's output directory, a checkpoint, a merged model or
                   an export), keyed by the SHA-256 of its statement; ``artifact_digest`` is the manifest
                   digest of its files (what a later run's ``base_model.digest`` is when it trains on it)
``reg_files``      the record's subjects (file name, SHA-256)
``reg_links``      what went into it besides data: base model, tokenizer, merge inputs (by digest), and the
                   runs it continues (by run id)
``reg_uses``       the datasets it names (digest, Merkle root, role, record count, a carved split's parent)
``reg_datasets``   datasets whose per-record digests are indexed: their root, and the tree over their chunk
                   roots, level by level (a proof reads its path from it without hashing)
``reg_dataset_refs`` every dataset digest an indexed record names (to list those whose records are not indexed)
``reg_chunks``     those record digests, in file order, ``CHUNK`` per row (inclusion proofs read one chunk)
``reg_records``    record digest prefix (first 8 bytes as a signed 64-bit integer) -> (dataset, position)
``reg_trust``      the trust material that verified each record when it was indexed (PEM public keys, CA and
                   TSA certificates with their fingerprints, the expected identity): ``bastion registry
                   verify`` checks the record again against exactly this, not what is configured later
"""

from __future__ import annotations

from bastion.sqlstore.migrations import Migration

SCHEMA_TABLE = "reg_schema"

MIGRATIONS: list[Migration] = [
    (
        1,
        "run records, their files, links, datasets and per-record digests",
        [
            """CREATE TABLE reg_artifacts (
                record_id TEXT PRIMARY KEY,
                artifact_digest TEXT NOT NULL,
                run_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                framework TEXT,
                base_model TEXT,
                base_model_name TEXT,
                tokenizer TEXT,
                signer TEXT,
                verified INTEGER NOT NULL,
                failures TEXT NOT NULL,
                started_at TEXT,
                finished_at TEXT,
                ledger_head TEXT,
                ledger_entries BIGINT,
                path TEXT NOT NULL,
                predicate TEXT NOT NULL,
                indexed_at BIGINT NOT NULL
            )""",
            "CREATE INDEX reg_artifacts_digest ON reg_artifacts (artifact_digest)",
            "CREATE INDEX reg_artifacts_run ON reg_artifacts (run_id)",
            """CREATE TABLE reg_files (
                record_id TEXT NOT NULL,
                name TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                PRIMARY KEY (record_id, name)
            )""",
            "CREATE INDEX reg_files_sha ON reg_files (sha256)",
            """CREATE TABLE reg_links (
                record_id TEXT NOT NULL,
                relation TEXT NOT NULL,
                target TEXT NOT NULL,
                target_kind TEXT NOT NULL,
                name TEXT,
                PRIMARY KEY (record_id, relation, target)
            )""",
            "CREATE INDEX reg_links_target ON reg_links (target)",
            """CREATE TABLE reg_uses (
                record_id TEXT NOT NULL,
                position INTEGER NOT NULL,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                sha256 TEXT NOT NULL,
                records BIGINT,
                merkle_root TEXT,
                size BIGINT,
                format TEXT,
                parent_sha256 TEXT,
                PRIMARY KEY (record_id, position)
            )""",
            "CREATE INDEX reg_uses_sha ON reg_uses (sha256)",
            "CREATE INDEX reg_uses_root ON reg_uses (merkle_root)",
            "CREATE INDEX reg_uses_parent ON reg_uses (parent_sha256)",
            """CREATE TABLE reg_dataset_refs (
                sha256 TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                records BIGINT
            )""",
            """CREATE TABLE reg_datasets (
                sha256 TEXT PRIMARY KEY,
                ds_key BIGINT NOT NULL UNIQUE,
                merkle_root TEXT NOT NULL,
                records BIGINT NOT NULL,
                chunk_size INTEGER NOT NULL,
                chunk_tree {blob} NOT NULL,
                source TEXT NOT NULL,
                indexed_at BIGINT NOT NULL
            )""",
            """CREATE TABLE reg_chunks (
                ds_key BIGINT NOT NULL,
                chunk BIGINT NOT NULL,
                leaves {blob} NOT NULL,
                PRIMARY KEY (ds_key, chunk)
            ){without_rowid}""",
            """CREATE TABLE reg_records (
                prefix BIGINT NOT NULL,
                ds_key BIGINT NOT NULL,
                pos BIGINT NOT NULL,
                PRIMARY KEY (prefix, ds_key, pos)
            ){without_rowid}""",
        ],
    ),
    (
        2,
        "trust material pinned per record",
        [
            """CREATE TABLE reg_trust (
                record_id TEXT PRIMARY KEY,
                material TEXT NOT NULL,
                pinned_at BIGINT NOT NULL
            )""",
        ],
    ),
]

LATEST = MIGRATIONS[-1][0]

__all__ = ["LATEST", "MIGRATIONS", "SCHEMA_TABLE"]
