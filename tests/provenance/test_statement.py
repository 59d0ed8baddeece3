"""The in-toto Statement v1: building, atomic writing and loading."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import InputError
from bastion.provenance.hashing import FileDigest, hash_directory
from bastion.provenance.statement import (
    PREDICATE_TYPE,
    RECORD_DIR,
    STATEMENT_TYPE,
    build_statement,
    load_statement,
    write_statement,
)

PREDICATE: dict[str, Any] = {"run_id": "r1", "framework": "transformers", "metrics": {"train_loss": 1.25}}


def test_build_from_a_directory_digest(tmp_path: Path) -> None:
    (tmp_path / "b.safetensors").write_bytes(b"b")
    (tmp_path / "a.json").write_bytes(b"{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.txt").write_bytes(b"c")
    d = hash_directory(tmp_path)
    st = build_statement(d, PREDICATE)
    assert st["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == PREDICATE_TYPE
    assert st["predicate"] == PREDICATE
    assert [s["name"] for s in st["subject"]] == ["a.json", "b.safetensors", "sub/c.txt"]
    assert st["subject"][1] == {"name": "b.safetensors", "digest": {"sha256": d.by_name()["b.safetensors"].sha256}}
    assert RECORD_DIR == "bastion"


def test_build_sorts_an_iterable_of_file_digests() -> None:
    files = [FileDigest("z", 1, "0" * 64), FileDigest("m", 1, "1" * 64)]
    assert [s["name"] for s in build_statement(iter(files), {})["subject"]] == ["m", "z"]


def test_build_refuses_an_empty_output(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="output directory is empty"):
        build_statement(hash_directory(tmp_path), PREDICATE)


def test_write_then_load_round_trip(tmp_path: Path) -> None:
    st = build_statement([FileDigest("model.safetensors", 3, "ab" * 32)], PREDICATE)
    path = write_statement(st, tmp_path / "out" / RECORD_DIR / "statement.json")
    assert path == tmp_path / "out" / "bastion" / "statement.json"
    assert load_statement(path) == st
    assert path.read_text().endswith("}\n")
    assert os.listdir(path.parent) == ["statement.json"]  # no temporary file left behind


def test_write_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "statement.json"
    first = write_statement(build_statement([FileDigest("a", 1, "0" * 64)], {"v": 1}), path)
    inode = first.stat().st_ino
    reader = open(path, encoding="utf-8")  # noqa: SIM115 - a reader holding the old version open
    write_statement(build_statement([FileDigest("a", 1, "0" * 64)], {"v": 2}), path)
    # The new file was renamed into place: the open reader still sees the complete old statement.
    assert json.load(reader)["predicate"] == {"v": 1}
    reader.close()
    assert path.stat().st_ino != inode
    assert load_statement(path)["predicate"] == {"v": 2}


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), object()])
def test_unwritable_values_leave_the_old_statement_intact(tmp_path: Path, bad: Any) -> None:
    path = tmp_path / "statement.json"
    good = build_statement([FileDigest("a", 1, "0" * 64)], PREDICATE)
    write_statement(good, path)
    before = path.read_bytes()
    with pytest.raises(InputError, match="cannot be written as JSON") as info:
        write_statement(build_statement([FileDigest("a", 1, "0" * 64)], {"metrics": {"loss": bad}}), path)
    assert info.value.path == path
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["statement.json"]


def test_write_into_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot write the statement"):
        write_statement(build_statement([FileDigest("a", 1, "0" * 64)], {}), blocker / "statement.json")


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="statement not found") as info:
        load_statement(tmp_path / "statement.json")
    assert "Bastion run directory" in str(info.value)
    bad = tmp_path / "bad.json"
    bad.write_text('{"_type": ')
    with pytest.raises(InputError, match="not valid JSON") as info:
        load_statement(bad)
    assert info.value.path == bad
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe{}")
    with pytest.raises(InputError, match="not valid JSON"):
        load_statement(binary)
    other = tmp_path / "other.json"
    other.write_text('{"_type": "https://in-toto.io/Statement/v0.1", "subject": []}')
    with pytest.raises(InputError, match="not an in-toto Statement v1"):
        load_statement(other)
    arr = tmp_path / "arr.json"
    arr.write_text("[]")
    with pytest.raises(InputError, match="not an in-toto Statement v1"):
        load_statement(arr)
    with pytest.raises(InputError, match="is a directory"):
        load_statement(tmp_path)
