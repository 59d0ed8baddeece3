"""Registering at finalize (``RunRecorder(registry=...)`` / ``$BASTION_REGISTER``), carved splits, resumed runs."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from bastion.provenance.datasets import record_digest
from bastion.provenance.inputs import DatasetInput
from bastion.provenance.recorder import RunRecorder
from bastion.provenance.registry import lineage, open_registry
from bastion.provenance.signing import KeyPair, generate_key_pair

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))
from cli_runner import run


def _records(prefix: str, n: int) -> list[dict[str, Any]]:
    return [{"messages": [{"role": "user", "content": f"{prefix} question {i}"}]} for i in range(n)]


def _jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_key_pair(tmp_path_factory.mktemp("keys"))


def _base(tmp_path: Path) -> Path:
    base = tmp_path / "base-model"
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text('{"model_type": "llama"}')
    return base


def _train(
    tmp_path: Path,
    keys: KeyPair,
    datasets: list[DatasetInput],
    *,
    registry: str | None = None,
    out: str = "out",
    resumed: int = 0,
) -> tuple[RunRecorder, Path]:
    rec = RunRecorder(
        base_model=_base(tmp_path),
        datasets=datasets,
        signing={"backend": "key", "private_key": str(keys.private_key)},
        registry=registry,
        fsync="never",
        strict=True,
    )
    target = tmp_path / out
    rec.start(target, resumed_at_step=resumed)
    (target / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 4)
    rec.log(1, 1.0, {"loss": 0.5})
    rec.train_end(1, 1.0)
    rec.finalize()
    return rec, target


def test_finalize_indexes_the_record_and_its_record_digests(
    tmp_path: Path, keys: KeyPair, registry_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_REGISTER_KEY", str(keys.public_key))
    train = _jsonl(tmp_path / "data" / "train.jsonl", _records("t", 30))
    carved = _jsonl(tmp_path / "data" / "all.jsonl", _records("c", 20))
    rec, out = _train(
        tmp_path,
        keys,
        [DatasetInput(train, "train"), *DatasetInput.carved(carved, test_size=0.25, seed=3)],
        registry=registry_db,
    )
    with open_registry(registry_db) as reg:
        (art,) = lineage._artifacts(reg, "run_id = ?", (rec.run_id,))
        assert art["verified"] and art["path"] == str(out.absolute()) and art["failures"] == []
        uses = lineage._uses_of(reg, art["record_id"])
        assert [(u["role"], u["records"], u["records_indexed"]) for u in uses] == [
            ("train", 30, True),
            ("train", 15, True),
            ("eval", 5, True),
        ]
        # A record of the carved eval side: found in that side, with a proof against its signed root.
        eval_side = json.loads((out / "bastion" / "statement.json").read_text())["predicate"]["datasets"][2]
        c_records = [record_digest(r) for r in _records("c", 20)]
        answer = lineage.by_record(reg, c_records[0])
        roles = {r["dataset"]["role"] for r in answer["runs"]}
        assert len(answer["runs"]) == 1 and roles <= {"train", "eval"}
        hit = answer["runs"][0]
        assert hit["proof_matches_signed_root"]
        if hit["dataset"]["role"] == "eval":
            assert hit["proof"]["root"] == eval_side["merkle_root"] and not hit["trained"]


def test_without_trust_material_the_hook_flags_the_record(tmp_path: Path, keys: KeyPair, registry_db: str) -> None:
    train = _jsonl(tmp_path / "data" / "train.jsonl", _records("t", 4))
    rec, _ = _train(tmp_path, keys, [DatasetInput(train, "train")], registry=registry_db)
    with open_registry(registry_db) as reg:
        (art,) = lineage._artifacts(reg, "run_id = ?", (rec.run_id,))
        assert art["verified"] is False and art["failures"]


def test_a_registry_problem_never_fails_the_run(
    tmp_path: Path, keys: KeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_db = tmp_path / "registry.sqlite3"
    not_a_db.write_bytes(b"garbage" * 200)
    train = _jsonl(tmp_path / "data" / "train.jsonl", _records("t", 4))
    with caplog.at_level(logging.WARNING, logger="bastion"):
        _, out = _train(tmp_path, keys, [DatasetInput(train, "train")], registry=str(not_a_db))
    assert (out / "bastion" / "statement.json").is_file()
    assert "was not added to the run registry" in caplog.text and "not a usable SQLite database" in caplog.text


def test_carved_sides_are_indexed_from_their_parent_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: KeyPair, registry_db: str
) -> None:
    carved = _jsonl(tmp_path / "data" / "all.jsonl", _records("c", 20))
    _, out = _train(tmp_path, keys, list(DatasetInput.carved(carved, test_size=0.25, seed=3)))
    code, text, err = run(
        capsys, "registry", "add", str(out), "--db", registry_db, "--key", str(keys.public_key), "--data", str(carved)
    )
    assert code == 0, text + err
    assert text.count("DATA indexed") == 2 and "(15 records" in text and "(5 records" in text
    with open_registry(registry_db) as reg:
        for r in _records("c", 20):
            (hit,) = lineage.by_record(reg, record_digest(r))["runs"]
            assert hit["proof_matches_signed_root"]


def test_a_resumed_run_carries_the_data_of_the_segment_it_continued(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: KeyPair, registry_db: str
) -> None:
    first = _jsonl(tmp_path / "data" / "first.jsonl", _records("first", 6))
    second = _jsonl(tmp_path / "data" / "second.jsonl", _records("second", 6))
    killed = RunRecorder(base_model=_base(tmp_path), datasets=[DatasetInput(first, "train")], fsync="never")
    killed.start(tmp_path / "out")
    killed.log(1, 0.5, {"loss": 0.9})
    killed.wait()
    killed.abort("killed (test)")
    rec, out = _train(tmp_path, keys, [DatasetInput(second, "train")], resumed=1)
    args = ["--db", registry_db, "--key", str(keys.public_key), "--data", str(first), "--data", str(second)]
    code, text, err = run(capsys, "registry", "add", str(out), *args)
    assert code == 0, text + err
    assert text.count("DATA indexed") == 2
    with open_registry(registry_db) as reg:
        (art,) = lineage._artifacts(reg, "run_id = ?", (rec.run_id,))
        links = reg.rows("SELECT relation, target FROM reg_links WHERE record_id = ?", (art["record_id"],))
        assert ("resumed_from", killed.run_id) in [tuple(r) for r in links]
        # The model was trained on the killed segment's data too: an erasure query finds it.
        (hit,) = lineage.by_record(reg, record_digest(_records("first", 6)[2]))["runs"]
        assert hit["run_id"] == rec.run_id and hit["trained"] and hit["proof_matches_signed_root"]


def test_a_record_sealed_again_replaces_the_old_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, keys: KeyPair, registry_db: str
) -> None:
    train = _jsonl(tmp_path / "data" / "train.jsonl", _records("t", 4))
    rec, out = _train(tmp_path, keys, [DatasetInput(train, "train")])
    args = ["registry", "add", str(out), "--db", registry_db, "--key", str(keys.public_key)]
    assert "ADDED" in run(capsys, *args)[1]
    # Extended after training (what axolotl merge-lora does): the directory's record is re-sealed and re-signed.
    again = RunRecorder.reopen(out, signing={"backend": "key", "private_key": str(keys.private_key)})
    (out / "merged").mkdir()
    (out / "merged" / "model.safetensors").write_bytes(b"merged weights")
    again.add_entry("merge", {"path": "merged"}, details={"path": "merged", "method": "test"})
    again.seal()
    code, text, _ = run(capsys, *args)
    assert code == 0 and text.startswith("UPDATED")
    with open_registry(registry_db) as reg:
        (art,) = lineage._artifacts(reg, "run_id = ?", (rec.run_id,))
        assert art["kind"] == "run"  # the run's own directory, which now holds the merged folder
        assert reg.rows("SELECT COUNT(*) FROM reg_artifacts")[0][0] == 1
        assert ("merged/model.safetensors",) in [tuple(r) for r in reg.rows("SELECT name FROM reg_files")]


def test_a_merge_recorded_after_training_is_registered_too(
    tmp_path: Path, keys: KeyPair, registry_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``axolotl merge-lora`` does (reopen, add_entry, copy_record, seal), with $BASTION_REGISTER set."""
    monkeypatch.setenv("BASTION_REGISTER", registry_db)
    monkeypatch.setenv("BASTION_REGISTER_KEY", str(keys.public_key))
    train = _jsonl(tmp_path / "data" / "train.jsonl", _records("t", 4))
    rec, out = _train(tmp_path, keys, [DatasetInput(train, "train")])
    merged = out / "merged"
    merged.mkdir()
    (merged / "model.safetensors").write_bytes(b"merged weights")
    again = RunRecorder.reopen(out, signing={"backend": "key", "private_key": str(keys.private_key)})
    again.add_entry("merge", {"path": "merged"}, details={"path": "merged", "method": "test"})
    again.copy_record(merged)
    again.seal()
    with open_registry(registry_db) as reg:
        arts = {(a["kind"], a["path"], a["verified"]) for a in lineage.list_artifacts(reg)}
        assert arts == {("run", str(out.absolute()), True), ("merge", str(merged.absolute()), True)}
        assert all(a["run_id"] == rec.run_id for a in lineage.list_artifacts(reg))
