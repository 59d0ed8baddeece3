"""``val_size``: the eval split LLaMA-Factory carves is recorded as its two sides (no LLaMA-Factory needed).

What is NOT exercised here: a real ``llamafactory-cli train`` run with ``val_size`` (framework job).
The reference for the carve is the datasets library, called as LLaMA-Factory 0.9's
``data_utils.split_dataset`` calls it on a single-file dataset.
"""

from __future__ import annotations

import json
from pathlib import Path

from bastion.plugins.llamafactory.resolve import LlamaFactoryRun, ResolvedDataset
from bastion.plugins.llamafactory.settings import BastionSettings
from bastion.provenance.datasets import record_digest
from bastion.provenance.inputs import train_eval_overlap


def make_run(tmp_path: Path, files: list[Path], **kwargs: object) -> LlamaFactoryRun:
    return LlamaFactoryRun(
        args={},
        settings=BastionSettings(),
        source="sft.yaml",
        stage="sft",
        do_train=True,
        model_name_or_path=None,
        adapter_name_or_path=None,
        output_dir=tmp_path / "out",
        dataset_dir=str(tmp_path),
        dataset_info=None,
        datasets=(ResolvedDataset("alpaca_demo", "train", "file", str(files[0]), tuple(files)),),
        **kwargs,  # type: ignore[arg-type]
    )


def write_alpaca(path: Path, n: int) -> Path:
    rows = [{"instruction": f"q{i % 17}", "input": "", "output": f"a{i % 17}"} for i in range(n)]
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def test_val_size_split_is_carved_like_llamafactory(tmp_path: Path) -> None:
    from datasets import load_dataset

    data = write_alpaca(tmp_path / "alpaca.json", 40)
    run = make_run(tmp_path, [data], val_size=0.1, seed=5)
    assert run.split_note() is None
    train_in, eval_in = run.dataset_inputs()
    parents: dict[Path, object] = {}
    [train] = train_in.digests(parents)
    [evals] = eval_in.digests(parents)
    # LLaMA-Factory: load the file, then train_test_split(test_size=val_size, seed=training seed).
    loaded = load_dataset("json", data_files=str(data), split="train", cache_dir=str(tmp_path / "cache"))
    parts = loaded.train_test_split(test_size=0.1, seed=5)
    assert evals.record_digests == [record_digest(r) for r in parts["test"]]
    assert train.record_digests == [record_digest(r) for r in parts["train"]]
    assert evals.split is not None and evals.split["seed"] == 5 and evals.split["test_size"] == 0.1
    assert train_eval_overlap([train, evals]) == sum(
        1 for d in evals.record_digests if d in set(train.record_digests)
    )  # rows repeat every 17: the split shares records, and they are counted
    assert train_eval_overlap([train, evals]) > 0


def test_a_count_above_one_is_a_record_count(tmp_path: Path) -> None:
    data = write_alpaca(tmp_path / "alpaca.json", 10)
    _, eval_in = make_run(tmp_path, [data], val_size=3.0, seed=1).dataset_inputs()
    assert eval_in.carve is not None and eval_in.carve.test_size == 3
    assert eval_in.digests()[0].records == 3


def test_splits_bastion_cannot_reproduce_are_named(tmp_path: Path) -> None:
    a, b = write_alpaca(tmp_path / "a.json", 5), write_alpaca(tmp_path / "b.json", 5)
    two = make_run(tmp_path, [a, b], val_size=0.2)
    assert [d.role for d in two.dataset_inputs()] == ["train", "train"]
    assert "not recorded record by record" in (two.split_note() or "")
    assert make_run(tmp_path, [a], val_size=0.2, max_samples=3).split_note() is not None
    assert make_run(tmp_path, [a], val_size=0.2, streaming=True).split_note() is not None
    plain = make_run(tmp_path, [a])
    assert plain.split_note() is None and [d.carve for d in plain.dataset_inputs()] == [None]
