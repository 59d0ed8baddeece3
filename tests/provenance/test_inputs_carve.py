"""Carved train/eval splits: the same records as ``datasets.Dataset.train_test_split``, recorded as derived inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError, InputError
from bastion.provenance.datasets import hash_dataset
from bastion.provenance.inputs import Carve, DatasetInput, train_eval_overlap
from bastion.provenance.merkle import MerkleTree, leaf_hash


def datasets_split(n: int, test_size: float | int, seed: int, shuffle: bool) -> tuple[list[int], list[int]]:
    """What the datasets library itself carves (the reference)."""
    from datasets import Dataset

    parts = Dataset.from_dict({"i": list(range(n))}).train_test_split(test_size=test_size, seed=seed, shuffle=shuffle)
    return list(parts["train"]["i"]), list(parts["test"]["i"])


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=2, max_value=200),
    st.one_of(st.floats(min_value=0.01, max_value=0.9), st.integers(min_value=1, max_value=5)),
    st.integers(min_value=0, max_value=2**31),
    st.booleans(),
)
def test_indices_are_the_ones_datasets_carves(n: int, test_size: float | int, seed: int, shuffle: bool) -> None:
    carve = Carve(test_size=test_size, seed=seed, shuffle=shuffle)
    try:
        expected = datasets_split(n, test_size, seed, shuffle)
    except ValueError:  # datasets refuses the sizes: so does the carve
        with pytest.raises(InputError, match="leaves no train or no eval"):
            carve.indices(n, "x")
        return
    assert carve.indices(n, "x") == expected


def test_explicit_indices() -> None:
    assert Carve(eval_indices=(4, 1)).indices(6, "f") == ([0, 2, 3, 5], [4, 1])
    with pytest.raises(InputError, match="eval index 9 is outside the 6 records"):
        Carve(eval_indices=(9,)).indices(6, "f")
    with pytest.raises(InputError, match="lists a record twice"):
        Carve(eval_indices=(1, 1)).indices(6, "f")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either test_size"),
        ({"test_size": 0.1, "eval_indices": (1,)}, "not both"),
        ({"test_size": 0.1}, "needs the seed"),
        ({"test_size": 1.5, "seed": 1}, "below 1"),
        ({"test_size": 0, "seed": 1}, "a fraction in"),
        ({"test_size": True, "seed": 1}, "a fraction in"),
    ],
)
def test_bad_carves_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Carve(**kwargs)  # type: ignore[arg-type]


def test_each_side_is_a_derived_input_with_its_own_root(tmp_path: Path) -> None:
    rows = [{"text": f"r{i}"} for i in range(10)] + [{"text": "r3"}]  # r3 twice: lands on both sides or not
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train, evals = DatasetInput.carved(data, eval_indices=[3, 7])
    parents: dict[Path, object] = {}
    [t] = train.digests(parents)  # type: ignore[arg-type]
    [e] = evals.digests(parents)  # type: ignore[arg-type]
    parent = hash_dataset(data)
    assert (t.records, e.records) == (9, 2)
    assert e.record_digests == [parent.record_digests[3], parent.record_digests[7]]
    assert e.merkle_root == MerkleTree([leaf_hash(bytes.fromhex(d)) for d in e.record_digests]).root
    assert e.split == {
        "side": "eval",
        "parent": {
            "name": "train.jsonl",
            "digest": {"sha256": parent.sha256},
            "records": 11,
            "merkle_root": parent.merkle_root,
        },
        "method": "indices",
        "eval_indices": [3, 7],
    }
    assert (t.name, e.name, t.role, e.role) == ("train.jsonl[train]", "train.jsonl[eval]", "train", "eval")
    assert e.as_dict()["split"]["parent"]["digest"]["sha256"] == parent.sha256
    # r3 is eval record 0 and also train record 10: one shared record, counted over what each side holds.
    assert train_eval_overlap([t, e]) == 1


def test_a_carve_needs_per_record_digests(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    train, _ = DatasetInput.carved(data, eval_indices=[0])
    with pytest.raises(InputError, match="needs per-record digests; csv files have none"):
        train.digests()


def test_a_carve_from_a_save_to_disk_folder_reads_its_rows(tmp_path: Path) -> None:
    from datasets import Dataset

    folder = tmp_path / "prepared"
    Dataset.from_dict({"input_ids": [[1, 2], [3], [1, 2], [4, 5, 6]]}).save_to_disk(str(folder))
    train, evals = DatasetInput.carved(folder, test_size=1, shuffle=False, name="prepared")
    [t], [e] = train.digests(), evals.digests()
    assert (t.records, e.records) == (3, 1)
    assert e.split is not None and e.split["parent"]["records"] == 4 and e.format == "arrow-rows"
    assert train_eval_overlap([t, e]) == 0
    train2, evals2 = DatasetInput.carved(folder, eval_indices=[2], name="prepared")
    assert train_eval_overlap(train2.digests() + evals2.digests()) == 1  # [1, 2] is on both sides
