"""Fast checks of the plugin's config model and input resolution; no Axolotl needed (default suite)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bastion.plugins.axolotl.args import BastionArgs
from bastion.plugins.axolotl.inputs import prepared_inputs, resolve_inputs
from bastion.provenance.redaction import REDACTED, redact_secrets


def test_args_defaults() -> None:
    args = BastionArgs()
    assert (args.bastion_strict, args.bastion_signing, args.bastion_sign_checkpoints) == (False, None, False)
    assert args.bastion_fsync == "interval" and args.bastion_record_merge is True


def test_unknown_bastion_key_names_the_closest_valid_one() -> None:
    with pytest.raises(ValidationError) as info:
        BastionArgs.model_validate({"bastion_sign_checkpoint": True, "lora_r": 8})
    text = str(info.value)
    assert "unknown config key 'bastion_sign_checkpoint' (did you mean 'bastion_sign_checkpoints'?)" in text


def test_keys_of_other_tools_are_left_to_axolotl() -> None:
    args = BastionArgs.model_validate({"lora_r": 8, "wandb_project": "x", "bastion_strict": True})
    assert args.bastion_strict is True


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=20))
def test_any_unknown_bastion_key_is_rejected(suffix: str) -> None:
    key = "bastion_" + suffix
    if key in BastionArgs.model_fields:
        return
    with pytest.raises(ValidationError, match="unknown config key"):
        BastionArgs.model_validate({key: 1})


def test_signing_is_checked_with_the_signing_module(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="private_key: required for backend 'key'"):
        BastionArgs.model_validate({"bastion_signing": {"backend": "key"}})
    with pytest.raises(ValidationError, match=r"bastion_signing\.private_key: file not found"):
        BastionArgs.model_validate({"bastion_signing": {"backend": "key", "private_key": str(tmp_path / "no.pem")}})
    key = tmp_path / "k.pem"
    key.write_text("not checked here; loaded before training", encoding="utf-8")
    ok = BastionArgs.model_validate({"bastion_signing": {"backend": "key", "private_key": str(key)}})
    assert ok.bastion_signing == {"backend": "key", "private_key": str(key)}


def test_near_duplicates_setting_is_checked_naming_the_key() -> None:
    ok = BastionArgs.model_validate({"bastion_near_duplicates": {"threshold": 0.7}})
    assert ok.bastion_near_duplicates == {"threshold": 0.7}
    with pytest.raises(ValidationError, match=r"bastion_near_duplicates\.threshold: Input should be less than"):
        BastionArgs.model_validate({"bastion_near_duplicates": {"threshold": 7}})


def _write(path: Path, text: str = '{"text": "x"}\n') -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_resolve_local_files_dirs_and_roles(tmp_path: Path) -> None:
    model = tmp_path / "model"
    _write(model / "config.json", "{}")
    train = _write(tmp_path / "train.jsonl")
    saved = tmp_path / "saved"  # a save_to_disk folder: shards are data, the JSON files describe them
    _write(saved / "data-00000-of-00001.arrow", "arrow")
    _write(saved / "dataset_info.json", "{}")
    _write(saved / "state.json", "{}")
    files_dir = tmp_path / "many"
    _write(files_dir / "a.jsonl")
    _write(files_dir / "b.jsonl")
    evals = _write(tmp_path / "eval.jsonl")
    cfg: dict[str, Any] = {
        "base_model": str(model),
        "tokenizer_config": str(model),
        "datasets": [
            {"path": str(train), "type": "chat_template"},
            {"path": str(saved)},
            {"path": str(files_dir), "data_files": ["b.jsonl"]},
            {"path": str(train)},  # listed twice: hashed once
        ],
        "test_datasets": [{"path": str(evals)}],
    }
    r = resolve_inputs(cfg)
    assert r.problems == []
    assert r.base_model == model and r.tokenizer is None  # same dir: recorded once, as the base model
    got = [(d.name, d.role) for d in r.datasets]
    assert got == [
        ("train.jsonl", "train"),
        ("saved/data-00000-of-00001.arrow", "train"),
        ("many/b.jsonl", "train"),
        ("eval.jsonl", "eval"),
    ]


def test_rl_datasets_are_preference_data(tmp_path: Path) -> None:
    prefs = _write(tmp_path / "prefs.jsonl")
    r = resolve_inputs({"rl": "dpo", "datasets": [{"path": str(prefs)}]})
    assert [(d.name, d.role) for d in r.datasets] == [("prefs.jsonl", "preference")]


def test_hub_ids_and_missing_files_are_reported_not_hashed(tmp_path: Path) -> None:
    r = resolve_inputs(
        {
            "base_model": "org/some-model",
            "datasets": [{"path": "org/some-dataset"}, {"path": str(tmp_path), "data_files": ["nope.jsonl"]}, {}],
        }
    )
    assert r.base_model is None and r.datasets == []
    messages = [m for _, m in r.problems]
    assert "base_model: 'org/some-model' is not a local directory" in messages[0]
    assert "datasets[0].path: 'org/some-dataset' is not a local file or directory" in messages[1]
    assert "datasets[1].data_files: file not found: nope.jsonl" in messages[2]
    assert "datasets[2].path: no path given" in messages[3]
    assert {c for c, _ in r.problems} == {"input.not_local", "input.dataset"}


def test_prepared_shards_are_named_by_their_cache_folder(tmp_path: Path) -> None:
    folder = tmp_path / "prepared" / "0123abcd"
    shard = _write(folder / "data-00000-of-00001.arrow", "arrow")
    _write(folder / "state.json", "{}")
    inputs = prepared_inputs([(folder, "train")], extra_files=[(shard, "train")])
    expected = [("prepared/0123abcd/data-00000-of-00001.arrow", "train", shard)]
    assert [(d.name, d.role, d.path) for d in inputs] == expected  # the shard is listed once


def test_secrets_are_redacted_from_the_recorded_config() -> None:
    cfg = {
        "hf_token": "hf_abc",
        "wandb_api_key": "k",
        "nested": {"password": "p", "password_env": "SIGNING_PASSWORD", "secret": ""},
        "special_tokens": {"pad_token": "<pad>"},
        "tokenizer_config": "./model",
        "list": [{"token": "t"}],
        "bastion_signing": {"backend": "key", "private_key": "keys/signing.pem"},
    }
    redacted = redact_secrets(cfg)
    out = redacted.value
    assert out["hf_token"] == REDACTED and out["wandb_api_key"] == REDACTED
    assert out["nested"] == {"password": REDACTED, "password_env": "SIGNING_PASSWORD", "secret": ""}
    assert out["special_tokens"] == {"pad_token": "<pad>"}
    assert out["tokenizer_config"] == "./model"
    assert out["list"] == [{"token": REDACTED}]
    # a path to key material is withheld too: the key name says "private_key", and a path says little
    assert out["bastion_signing"] == {"backend": "key", "private_key": REDACTED}
    assert set(redacted.paths) == {
        "/hf_token",
        "/wandb_api_key",
        "/nested/password",
        "/list/0/token",
        "/bastion_signing/private_key",
    }


def test_a_folder_with_split_train_records_only_the_train_files(tmp_path: Path) -> None:
    folder = tmp_path / "hub-layout"  # how a downloaded dataset repository looks
    _write(folder / "data" / "train-00000-of-00001.jsonl")
    _write(folder / "data" / "test-00000-of-00001.jsonl")
    _write(folder / "README.md", "# card")
    train_only = resolve_inputs({"datasets": [{"path": str(folder), "split": "train"}]})
    assert [d.name for d in train_only.datasets] == ["hub-layout/data/train-00000-of-00001.jsonl"]
    default = resolve_inputs({"datasets": [{"path": str(folder)}]})  # Axolotl's default split is train
    assert [d.name for d in default.datasets] == ["hub-layout/data/train-00000-of-00001.jsonl"]
    sliced = resolve_inputs({"datasets": [{"path": str(folder), "split": "test[:10]"}]})
    assert [d.name for d in sliced.datasets] == ["hub-layout/data/test-00000-of-00001.jsonl"]
    missing = resolve_inputs({"datasets": [{"path": str(folder), "split": "validation"}]})
    assert missing.datasets == [] and "no data files for split 'validation'" in missing.problems[0][1]
    plain = tmp_path / "plain"  # no split-named files: every file is train, as datasets reads it
    _write(plain / "a.jsonl")
    _write(plain / "b.jsonl")
    assert len(resolve_inputs({"datasets": [{"path": str(plain), "split": "train"}]}).datasets) == 2


def test_a_save_to_disk_dataset_dict_records_the_split_folder(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    folder = tmp_path / "dd"
    DatasetDict({"train": Dataset.from_dict({"t": ["a", "b"]}), "test": Dataset.from_dict({"t": ["c"]})}).save_to_disk(
        str(folder)
    )
    r = resolve_inputs({"datasets": [{"path": str(folder), "split": "train"}]})
    assert [d.name for d in r.datasets] == ["dd/train/data-00000-of-00001.arrow"]  # not dd/test/...


def test_val_set_size_carves_the_prepared_train_folder(tmp_path: Path) -> None:
    from datasets import Dataset

    from bastion.plugins.axolotl.inputs import val_set_carve
    from bastion.provenance.inputs import train_eval_overlap

    rows = {"input_ids": [[1, 2], [3, 4], [5], [1, 2], [6, 7]]}
    folder = tmp_path / "last_run_prepared" / "abc123"
    Dataset.from_dict(rows).save_to_disk(str(folder))
    cfg = {"val_set_size": 0.4, "seed": 42, "datasets": [{"path": "x"}]}
    carve = val_set_carve(cfg)
    assert carve == (0.4, 42)
    shard = next(folder.glob("*.arrow"))
    inputs = prepared_inputs([(folder, "train")], extra_files=[(shard, "train")], carve=carve)
    assert [(d.name, d.role) for d in inputs] == [("prepared/abc123", "train"), ("prepared/abc123", "eval")]
    parents: dict[Path, Any] = {}
    digests = [d for i in inputs for d in i.digests(parents)]
    # Axolotl: train_test_split(test_size=0.4, shuffle=False) -> the last ceil(0.4 * 5) = 2 rows are eval.
    reference = Dataset.from_dict(rows).train_test_split(test_size=0.4, shuffle=False, seed=42)
    assert [d.records for d in digests] == [len(reference["train"]), len(reference["test"])] == [3, 2]
    assert train_eval_overlap(digests) == 1  # [1, 2] is row 0 (train) and row 3 (eval)
    for off in (
        {"val_set_size": 0},
        {"val_set_size": 0.1, "dataset_exact_deduplication": True},
        {"val_set_size": 0.1, "dataset_shard_num": 2},
        {"val_set_size": 0.1, "test_datasets": [{"path": "e"}]},
    ):
        assert val_set_carve(off) is None
    assert val_set_carve({"val_set_size": 20, "seed": 1}) == (20, 1)
