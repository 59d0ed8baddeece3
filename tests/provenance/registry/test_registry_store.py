"""The registry's store on both backends: record digests, lookups, and errors an operator can act on."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from bastion.provenance.merkle import MerkleTree, leaf_hash
from bastion.provenance.registry import RegistryError, open_registry
from bastion.provenance.registry.lineage import _digests, find_record
from bastion.provenance.registry.proofs import check_proof


def _digests_of(n: int, salt: str = "") -> list[bytes]:
    return [hashlib.sha256(f"{salt}record {i}".encode()).digest() for i in range(n)]


def _root(digests: list[bytes]) -> str:
    return MerkleTree([leaf_hash(d) for d in digests]).root


def test_records_across_chunks_are_found_with_proofs(registry_db: str) -> None:
    digests = _digests_of(2500)
    root = _root(digests)
    sha = "ab" * 32
    with open_registry(registry_db) as reg:
        assert reg.put_records(sha, root, iter(digests), source="test") is True
        assert reg.put_records(sha, root, iter(digests), source="test") is False  # already indexed
        assert _digests(reg, sha) == digests
        for i in (0, 1023, 1024, 2047, 2499):
            (hit,) = find_record(reg, digests[i])
            assert hit.sha256 == sha and hit.index == i and hit.records == 2500 and hit.merkle_root == root
            assert check_proof(hit.proof, digests[i].hex())
        assert find_record(reg, hashlib.sha256(b"not there").digest()) == []


def test_a_shared_prefix_is_told_apart_by_the_full_digest(registry_db: str) -> None:
    a = bytes(8) + hashlib.sha256(b"a").digest()[8:]
    b = bytes(8) + hashlib.sha256(b"b").digest()[8:]
    digests = [*_digests_of(3), a, b]
    with open_registry(registry_db) as reg:
        reg.put_records("cd" * 32, _root(digests), digests, source="test")
        assert [h.index for h in find_record(reg, b)] == [4]
        assert [h.index for h in find_record(reg, a)] == [3]
        assert find_record(reg, bytes(8) + hashlib.sha256(b"c").digest()[8:]) == []


def test_digests_that_do_not_rebuild_the_signed_root_are_refused_and_nothing_is_written(registry_db: str) -> None:
    digests = _digests_of(1500)
    with open_registry(registry_db) as reg:
        with pytest.raises(RegistryError, match=r"rebuild the Merkle root .* not the signed .*nothing was indexed"):
            reg.put_records("ef" * 32, _root(digests[:-1]), digests, source="test")
        assert not reg.has_records("ef" * 32)
        assert reg.rows("SELECT COUNT(*) FROM reg_records")[0][0] == 0
        assert reg.rows("SELECT COUNT(*) FROM reg_chunks")[0][0] == 0


def test_reopening_keeps_the_index(registry_db: str) -> None:
    digests = _digests_of(10)
    with open_registry(registry_db) as reg:
        reg.put_records("01" * 32, _root(digests), digests, source="test")
    with open_registry(registry_db) as reg:
        assert reg.has_records("01" * 32) and [h.index for h in find_record(reg, digests[7])] == [7]


def test_a_file_that_is_not_a_database_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "registry.sqlite3"
    bad.write_bytes(b"this is not a database, it is a note" * 100)
    with pytest.raises(RegistryError, match=r"not a usable SQLite database") as exc:
        open_registry(str(bad))
    assert str(bad) in exc.value.message and exc.value.hint


def test_a_directory_is_not_a_registry_file(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="is not a regular file"):
        open_registry(str(tmp_path))


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    open_registry(str(db)).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO reg_schema (version, name, applied_at) VALUES (99, 'future', 0)")
    with pytest.raises(RegistryError, match="schema version 99, newer than this Bastion knows"):
        open_registry(str(db))


def test_an_unreachable_postgres_is_one_line_without_the_password() -> None:
    pytest.importorskip("psycopg")
    with pytest.raises(RegistryError, match="is unavailable") as exc:
        open_registry("postgresql://auditor:s3cret@127.0.0.1:1/registry")
    assert "s3cret" not in str(exc.value) and "postgresql://auditor@127.0.0.1:1/registry" in str(exc.value)


def test_default_location_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bastion.provenance.registry import default_location

    monkeypatch.delenv("BASTION_REGISTRY", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_location() == str(tmp_path / "bastion" / "registry.sqlite3")
    monkeypatch.setenv("BASTION_REGISTRY", "postgresql://u@h/db")
    assert default_location() == "postgresql://u@h/db"
