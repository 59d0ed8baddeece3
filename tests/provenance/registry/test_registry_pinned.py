"""Trust pinned at ``registry add`` and ``bastion registry verify`` against it alone, on both backends."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from bastion.provenance.registry import Trust, add_paths, open_registry
from bastion.provenance.signing import KeyPair, generate_key_pair, sign_run
from bastion.provenance.signing.bundle import key_fingerprint
from bastion.provenance.signing.config import SigningConfig
from bastion.provenance.signing.keys import load_public_key
from bastion.provenance.signing.testing import make_run_dir

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))
from cli_runner import run


@pytest.fixture(scope="module")
def key_a(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(tmp_path_factory.mktemp("key-a"))


@pytest.fixture(scope="module")
def key_b(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(tmp_path_factory.mktemp("key-b"))


def _signed(root: Path, run_id: str, keys: KeyPair) -> Path:
    out = make_run_dir(root / run_id, run_id=run_id)
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    return out


def _record_id(out: Path) -> str:
    return hashlib.sha256((out / "bastion" / "statement.json").read_bytes()).hexdigest()


def test_runs_verify_later_against_the_pinned_key_only(
    capsys: pytest.CaptureFixture[str], registry_db: str, key_a: KeyPair, key_b: KeyPair, tmp_path: Path
) -> None:
    a = _signed(tmp_path, "run-a", key_a)
    b = _signed(tmp_path, "run-b", key_b)
    with open_registry(registry_db) as reg:
        # Both keys are trusted at indexing; each record pins only the key that verified it.
        trust = Trust(public_key=(key_a.public_key, key_b.public_key))
        assert [r.status for r in add_paths(reg, [str(a), str(b)], trust)] == ["added", "added"]
    fp_a = key_fingerprint(load_public_key(key_a.public_key))
    fp_b = key_fingerprint(load_public_key(key_b.public_key))
    with open_registry(registry_db) as reg:  # the pinned material survives a reopen
        pinned = reg.pinned_trust(_record_id(a))
        assert pinned is not None
        assert [k["fingerprint"] for k in pinned["public_keys"]] == [fp_a]
        assert pinned["public_keys"][0]["pem"] == key_a.public_key.read_text()
        assert pinned["used"] and all(u == {"public_key": fp_a} for u in pinned["used"].values())
    # No key given: the pinned material alone verifies both.
    code, out, _ = run(capsys, "registry", "verify", "--all", "--db", registry_db, "--json")
    assert code == 0, out
    checks = {c["run_id"]: c for c in json.loads(out)}
    assert checks["run-a"]["ok"] and checks["run-a"]["pinned"] == [fp_a]
    assert checks["run-b"]["ok"] and checks["run-b"]["pinned"] == [fp_b]
    code, out, _ = run(capsys, "registry", "verify", "run-a", "--db", registry_db)
    assert code == 0 and out.startswith(f"OK   run-a  run        {a}") and "1 of 1 record(s)" in out

    # Files changed after indexing: that run fails, the other still verifies, exit 1.
    victim = next(p for p in sorted(a.rglob("*")) if p.is_file() and "bastion" not in p.relative_to(a).parts)
    victim.write_bytes(victim.read_bytes() + b"tampered")
    code, out, _ = run(capsys, "registry", "verify", "--all", "--db", registry_db)
    assert code == 1
    assert f"FAIL run-a  run        {a}" in out and "subject.modified" in out
    assert f"OK   run-b  run        {b}" in out and "1 of 2 record(s)" in out


def test_a_run_signed_again_with_another_key_fails_against_its_pin(
    capsys: pytest.CaptureFixture[str], key_a: KeyPair, key_b: KeyPair, tmp_path: Path
) -> None:
    db = str(tmp_path / "r.sqlite3")
    a = _signed(tmp_path, "run-a", key_a)
    code, _, _ = run(capsys, "registry", "add", str(a), "--db", db, "--key", str(key_a.public_key))
    assert code == 0
    sign_run(a, SigningConfig(backend="key", private_key=key_b.private_key))  # re-signed by someone else
    code, out, _ = run(capsys, "registry", "verify", "run-a", "--db", db)
    assert code == 1 and "FAIL run-a" in out and "signature.untrusted_key" in out


def test_records_without_a_pin_and_unknown_runs(
    capsys: pytest.CaptureFixture[str], key_a: KeyPair, key_b: KeyPair, tmp_path: Path
) -> None:
    db = str(tmp_path / "r.sqlite3")
    a = _signed(tmp_path, "run-a", key_a)
    # Indexed unverified (wrong key, --flag-unverified): nothing verified it, so nothing is pinned.
    code, _, _ = run(capsys, "registry", "add", str(a), "--db", db, "--key", str(key_b.public_key), "--flag-unverified")
    assert code == 0
    code, out, _ = run(capsys, "registry", "verify", "run-a", "--db", db)
    assert code == 1 and "no trust material is pinned for this record" in out
    code, out, err = run(capsys, "registry", "verify", "run-zz", "--db", db)
    assert code == 2 and "no indexed record of run run-zz" in err and out == ""
    code, _, err = run(capsys, "registry", "verify", "--db", db)
    assert code == 2 and "name one RUN_ID, or pass --all" in err


def test_a_registry_from_before_pinning_is_migrated_and_pins_on_the_next_add(
    capsys: pytest.CaptureFixture[str], key_a: KeyPair, tmp_path: Path
) -> None:
    import sqlite3

    from bastion.provenance.registry.schema import MIGRATIONS, SCHEMA_TABLE
    from bastion.provenance.registry.store import _SQLiteDialect
    from bastion.sqlstore.migrations import apply_migrations

    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    apply_migrations(
        conn, _SQLiteDialect(), MIGRATIONS[:1], table=SCHEMA_TABLE, now_ms=0, too_new=lambda f, latest: RuntimeError(),
        formats={"without_rowid": " WITHOUT ROWID"},
    )  # fmt: skip
    conn.close()
    a = _signed(tmp_path, "run-a", key_a)
    with open_registry(str(db)) as reg:  # schema 1 -> 2 on the way in
        assert reg.rows(f"SELECT MAX(version) FROM {SCHEMA_TABLE}")[0][0] == 2
        add_paths(reg, [str(a)], Trust(public_key=(key_a.public_key,)))
    with sqlite3.connect(db) as conn:  # as a record indexed by the older Bastion: no pin
        conn.execute("DELETE FROM reg_trust")
    code, out, _ = run(capsys, "registry", "verify", "run-a", "--db", str(db))
    assert code == 1 and "no trust material is pinned" in out
    code, out, _ = run(capsys, "registry", "add", str(a), "--db", str(db), "--key", str(key_a.public_key))
    assert code == 0 and out.startswith("UNCHANGED")
    code, out, _ = run(capsys, "registry", "verify", "run-a", "--db", str(db))
    assert code == 0, out
