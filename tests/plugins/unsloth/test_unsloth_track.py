"""track() on a real TRL SFTTrainer LoRA run (CPU), with the save calls an Unsloth notebook makes.

Unsloth itself cannot be imported without a GPU, and is not needed: ``FastLanguageModel`` returns
plain transformers/PEFT objects with extra save methods bound on the instance
(``unsloth.save.patch_saving_functions``). Here the model is a real ``PeftModelForCausalLM`` trained
by TRL's ``SFTTrainer``; ``save_pretrained_merged`` and ``save_pretrained_gguf`` are stand-ins bound
the same way (``types.MethodType``) and doing what Unsloth's do for these arguments: merge the LoRA
into the base weights and ``save_pretrained`` them plus the tokenizer (save_method="lora": the
adapter via ``self.save_pretrained``); GGUF: the merged 16-bit save in ``<dir>`` and the converted
files in the sibling ``<dir>_gguf`` (the llama.cpp conversion itself is not run: its output is
represented by a file written there), returning the same dict keys.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import types
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import BastionError, ConfigError
from bastion.plugins.hf import DatasetInput
from bastion.plugins.hf.tiny import build_tiny_model, write_demo_datasets
from bastion.plugins.unsloth import UnslothCallback, track, untrack
from bastion.provenance.hashing import hash_directory
from bastion.provenance.ledger import read_entries, verify_ledger
from bastion.provenance.statement import load_statement

pytestmark = pytest.mark.slow

REPO_ID = "bastion-test/tiny-llama-bnb-4bit"
COMMIT = "9f1c0b7e5d3a2f4e6c8b0a1d3e5f7a9b2c4d6e8f"


def unsloth_save_pretrained_merged(
    self: Any,
    save_directory: str | os.PathLike[str],
    tokenizer: Any = None,
    save_method: str = "merged_16bit",
    **_: Any,
) -> None:
    """Stand-in for ``unsloth.save.unsloth_generic_save_pretrained_merged`` (unsloth 2026.10.9)."""
    if save_method == "lora":
        self.save_pretrained(save_directory)
    else:
        merged = copy.deepcopy(self).merge_and_unload()
        merged.save_pretrained(save_directory, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(save_directory)


def unsloth_save_pretrained_gguf(
    self: Any, save_directory: str | os.PathLike[str], tokenizer: Any = None, quantization_method: str = "f16", **_: Any
) -> dict[str, Any]:
    """Stand-in for ``unsloth.save.unsloth_save_pretrained_gguf``: merge to <dir>, GGUF to <dir>_gguf."""
    unsloth_save_pretrained_merged(self, save_directory, tokenizer)
    gguf_dir = f"{os.fspath(save_directory)}_gguf"
    os.makedirs(gguf_dir, exist_ok=True)
    target = Path(gguf_dir) / f"model.{quantization_method.upper()}.gguf"
    target.write_bytes(b"GGUF" + (Path(save_directory) / "model.safetensors").read_bytes())
    return {"save_directory": os.fspath(save_directory), "gguf_directory": gguf_dir, "gguf_files": [str(target)]}


def bind_unsloth_savers(model: Any) -> None:
    """What patch_saving_functions does for these two: bind on the instance with types.MethodType."""
    model.save_pretrained_merged = types.MethodType(unsloth_save_pretrained_merged, model)
    model.save_pretrained_gguf = types.MethodType(unsloth_save_pretrained_gguf, model)


def make_hf_cache(cache: Path, repo_id: str, source: Path) -> Path:
    """Lay ``source``'s files out as huggingface_hub's cache does: blobs/ + snapshots/<commit>/ links + refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    for f in sorted(p for p in source.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snap / f.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snap


@dataclass
class Run:
    root: Path
    build: Path
    cache: Path
    run_dir: Path
    lora: Path
    merged: Path
    keys: Path
    callback: UnslothCallback
    model: Any
    tokenizer: Any


def load_lora_model(snapshot: Path) -> tuple[Any, Any]:
    """What FastLanguageModel.from_pretrained(REPO_ID) + get_peft_model hand back (minus Unsloth's kernels)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(snapshot)
    base = AutoModelForCausalLM.from_pretrained(snapshot)
    # As when loaded by Hub id (what Unsloth users pass): transformers records the id, not the snapshot path.
    base.config._name_or_path = base.name_or_path = REPO_ID
    model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    )
    bind_unsloth_savers(model)
    return model, tokenizer


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    import datasets as hf_datasets
    from trl import SFTConfig, SFTTrainer

    from bastion.provenance.signing import generate_key_pair

    root = tmp_path_factory.mktemp("unsloth")
    build = build_tiny_model(root / "build")
    data = write_demo_datasets(root / "data")
    cache = root / "hf-cache"
    snapshot = make_hf_cache(cache, REPO_ID, build)
    generate_key_pair(root / "keys")
    model, tokenizer = load_lora_model(snapshot)

    callback = track(
        model,
        tokenizer,
        datasets=[DatasetInput(data["train"], role="train"), DatasetInput(data["eval"], role="eval")],
        config={"r": 4, "lora_alpha": 8, "max_steps": 3},
        signing={"backend": "key", "private_key": str(root / "keys" / "signing.pem")},
        cache_dir=cache,
    )
    run_dir = root / "outputs"
    args = SFTConfig(
        output_dir=str(run_dir),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=5e-3,
        logging_steps=1,
        save_strategy="steps",
        save_steps=3,
        use_cpu=True,
        report_to=[],
        disable_tqdm=True,
        max_length=96,
        seed=3,
    )
    train = hf_datasets.load_dataset("json", data_files=str(data["train"]), split="train")
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer, callbacks=[callback])
    trainer.train()

    # The saves of Unsloth's notebooks, in their order.
    lora, merged = root / "lora_model", root / "merged_model"
    model.save_pretrained(lora)
    tokenizer.save_pretrained(lora)
    model.save_pretrained_merged(merged, tokenizer, save_method="merged_16bit")
    callback.finalize()
    return Run(root, build, cache, run_dir, lora, merged, root / "keys", callback, model, tokenizer)


def _statement_and_files(directory: Path) -> tuple[dict[str, Any], dict[str, str]]:
    statement = load_statement(directory / "bastion" / "statement.json")
    on_disk = {f.name: f.sha256 for f in hash_directory(directory, exclude=("bastion",)).files}
    return statement, on_disk


def test_each_save_gets_a_statement_whose_subjects_are_its_files(run: Run) -> None:
    for directory, method in ((run.lora, "tokenizer.save_pretrained"), (run.merged, "save_pretrained_merged")):
        statement, on_disk = _statement_and_files(directory)
        assert {s["name"]: s["digest"]["sha256"] for s in statement["subject"]} == on_disk
        pred = statement["predicate"]
        assert pred["framework"] == "unsloth"
        assert pred["export"]["method"] == method
        assert pred["run_id"] == run.callback.run_id
    lora_names = set(_statement_and_files(run.lora)[1])
    # The adapter and the tokenizer saved after it are both covered by the directory's latest statement.
    assert {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json"} <= lora_names
    assert "model.safetensors" in _statement_and_files(run.merged)[1]
    assert _statement_and_files(run.merged)[0]["predicate"]["export"]["save_method"] == "merged_16bit"


def test_unsloth_itself_was_never_imported(run: Run) -> None:
    import sys

    assert not [m for m in sys.modules if m == "unsloth" or m.startswith(("unsloth.", "unsloth_zoo"))]


def test_merged_save_really_merged_the_trained_adapter(run: Run) -> None:
    import torch
    from safetensors.torch import load_file

    merged = load_file(run.merged / "model.safetensors")
    base = load_file(run.build / "model.safetensors")
    assert not any("lora" in k for k in merged)
    assert set(merged) == set(base)
    changed = [k for k in base if not torch.equal(base[k], merged[k])]
    assert changed and all(("q_proj" in k or "v_proj" in k) for k in changed)


def test_base_model_is_the_cached_hub_snapshot_with_its_digests(run: Run) -> None:
    expected = {
        f.relative_to(run.build).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in run.build.rglob("*")
        if f.is_file()
    }
    for directory in (run.lora, run.merged, run.run_dir):
        pred = load_statement(directory / "bastion" / "statement.json")["predicate"]
        base = pred["base_model"]
        assert base["path_name"] == REPO_ID
        assert base["source"]["kind"] == "hub" and base["source"]["revision"] == COMMIT
        assert {f["name"]: f["digest"]["sha256"] for f in base["files"]} == expected
        assert pred["tokenizer"] == base
        assert {d["role"] for d in pred["datasets"]} == {"train", "eval"}
        assert pred["overlap"]["train_eval_records"] == 0


def test_ledgers_are_valid_and_each_save_recorded_once(run: Run) -> None:
    run_ledger = run.run_dir / "bastion" / "ledger.jsonl"
    run_pred = load_statement(run.run_dir / "bastion" / "statement.json")["predicate"]
    verify_ledger(run_ledger, expected_head=run_pred["ledger"]["head"], expected_entries=run_pred["ledger"]["entries"])
    entries = [e for _, e in read_entries(run_ledger)]
    exports = [e["data"] for e in entries if e["kind"] == "export"]
    # model.save_pretrained, tokenizer.save_pretrained, save_pretrained_merged: the tokenizer save made
    # inside save_pretrained_merged is part of that call, not a fourth record.
    assert [(e["method"], e["path"]) for e in exports] == [
        ("save_pretrained", "lora_model"),
        ("tokenizer.save_pretrained", "lora_model"),
        ("save_pretrained_merged", "merged_model"),
    ]
    # The Trainer's checkpoint save (model/tokenizer save_pretrained into output_dir) is the run's own
    # "checkpoint" entry, not an export with a record of its own.
    assert (run.run_dir / "checkpoint-3" / "adapter_model.safetensors").is_file()
    assert not (run.run_dir / "checkpoint-3" / "bastion").exists()
    kinds = Counter(e["kind"] for e in entries)
    assert kinds["inputs"] == 1 and kinds["checkpoint"] == 1 and kinds["outputs"] == 1
    # The Hub model's source (repo id, commit) is part of the run's one "inputs" entry.
    (inputs,) = [e["data"] for e in entries if e["kind"] == "inputs"]
    assert inputs["base_model"]["path_name"] == REPO_ID
    assert inputs["base_model"]["source"]["kind"] == "hub" and inputs["base_model"]["source"]["revision"] == COMMIT
    for directory in (run.lora, run.merged):
        statement, on_disk = _statement_and_files(directory)
        ledger = directory / "bastion" / "ledger.jsonl"
        head = verify_ledger(
            ledger,
            expected_head=statement["predicate"]["ledger"]["head"],
            expected_entries=statement["predicate"]["ledger"]["entries"],
        )
        copy_entries = [e for _, e in read_entries(ledger)]
        last = copy_entries[-1]
        assert last["kind"] == "export" and last["hash"] == head.head
        assert {f["name"]: f["digest"]["sha256"] for f in last["data"]["files"]} == on_disk
        # The copy is the run ledger's own prefix, byte for byte.
        assert copy_entries == entries[: len(copy_entries)]


def test_signed_exports_verify_and_tampering_is_caught(run: Run, tmp_path: Path) -> None:
    from bastion.provenance.verify import verify

    pub = run.keys / "signing.pub"
    assert all(e.signed for e in run.callback.exports)
    assert run.callback.warnings == (), run.callback.warnings
    for directory in (run.lora, run.merged, run.run_dir):
        assert (directory / "bastion" / "statement.sigstore.json").is_file()
        report = verify(directory, public_key=pub)
        assert report.ok, report.as_dict()
    tampered = tmp_path / "merged"
    shutil.copytree(run.merged, tampered)
    config = json.loads((tampered / "config.json").read_text())
    config["rope_theta"] = 1.0
    (tampered / "config.json").write_text(json.dumps(config))
    assert not verify(tampered, public_key=pub).ok


def test_gguf_export_after_finalize_signs_both_folders_and_leaves_the_run_record_intact(run: Run) -> None:
    from bastion.provenance.verify import verify

    run_statement_before = (run.run_dir / "bastion" / "statement.json").read_bytes()
    run_ledger_before = (run.run_dir / "bastion" / "ledger.jsonl").read_bytes()
    target = run.root / "gguf_model"
    result = run.model.save_pretrained_gguf(target, run.tokenizer, quantization_method="f16")
    gguf_dir = Path(result["gguf_directory"])
    assert gguf_dir == run.root / "gguf_model_gguf"
    for directory in (target, gguf_dir):
        statement, on_disk = _statement_and_files(directory)
        assert {s["name"] for s in statement["subject"]} == set(on_disk)
        assert statement["predicate"]["export"] == {
            "method": "save_pretrained_gguf",
            "path": directory.name,
            "quantization_method": "f16",
        }
        # The run was sealed by finalize(): the export forks its chain in the copy, one entry past it.
        entries = [e for _, e in read_entries(directory / "bastion" / "ledger.jsonl")]
        assert entries[-1]["kind"] == "export" and entries[-2]["kind"] == "outputs"
        assert verify(directory, public_key=run.keys / "signing.pub").ok
    assert "model.F16.gguf" in _statement_and_files(gguf_dir)[1]
    assert (run.run_dir / "bastion" / "statement.json").read_bytes() == run_statement_before
    assert (run.run_dir / "bastion" / "ledger.jsonl").read_bytes() == run_ledger_before


# ---------------------------------------------------------------------- without a training run


@pytest.fixture(scope="module")
def untrained(run: Run) -> tuple[Any, Any]:
    """A fresh PEFT model from the same cached snapshot (no training)."""
    return load_lora_model(run.cache / ("models--" + REPO_ID.replace("/", "--")) / "snapshots" / COMMIT)


def test_save_without_a_training_run_saves_and_warns(untrained: tuple[Any, Any], run: Run, tmp_path: Path) -> None:
    model, tokenizer = untrained
    cb = track(model, tokenizer, cache_dir=run.cache)
    try:
        model.save_pretrained(tmp_path / "adapter")
        assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()  # the user's save went through
        assert not (tmp_path / "adapter" / "bastion").exists()
        assert any("no training run was" in w for w in cb.warnings)
    finally:
        untrack(model)


def test_strict_save_without_a_training_run_raises_after_saving(
    untrained: tuple[Any, Any], run: Run, tmp_path: Path
) -> None:
    model, tokenizer = untrained
    track(model, tokenizer, cache_dir=run.cache, strict=True)
    try:
        with pytest.raises(ConfigError, match="no training run was"):
            model.save_pretrained_merged(tmp_path / "m", tokenizer, save_method="lora")
        assert (tmp_path / "m" / "adapter_config.json").is_file()
    finally:
        untrack(model)


def test_other_ranks_record_nothing(
    untrained: tuple[Any, Any], run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, tokenizer = untrained
    monkeypatch.setenv("RANK", "1")
    cb = track(model, tokenizer, cache_dir=run.cache, strict=True)
    try:
        model.save_pretrained(tmp_path / "adapter")  # strict, yet no error: rank 1 never records
        assert cb.warnings == () and cb.exports == []
        assert not (tmp_path / "adapter" / "bastion").exists()
    finally:
        untrack(model)


def test_untrack_restores_the_instance_methods(untrained: tuple[Any, Any], run: Run) -> None:
    model, tokenizer = untrained
    bound_merged = model.__dict__["save_pretrained_merged"]
    track(model, tokenizer, cache_dir=run.cache)
    track(model, tokenizer, cache_dir=run.cache)  # tracking twice wraps the original once
    wrapped = model.__dict__["save_pretrained_merged"]
    assert wrapped is not bound_merged and wrapped.__bastion_original__ is bound_merged
    untrack(model)
    untrack(tokenizer)
    assert model.__dict__["save_pretrained_merged"] is bound_merged
    assert "save_pretrained" not in model.__dict__ and "save_pretrained" not in tokenizer.__dict__


def test_save_methods_rebound_after_track_are_reported(untrained: tuple[Any, Any], run: Run) -> None:
    model, tokenizer = untrained
    cb = track(model, tokenizer, cache_dir=run.cache)
    try:
        assert cb.unwrapped_save_methods() == []
        bind_unsloth_savers(model)  # what Unsloth's patch_saving_functions does again in get_peft_model
        assert cb.unwrapped_save_methods() == [
            "PeftModelForCausalLM.save_pretrained_merged",
            "PeftModelForCausalLM.save_pretrained_gguf",
        ]
    finally:
        untrack(model)
        untrack(tokenizer)
        bind_unsloth_savers(model)


def test_bad_arguments_are_refused_with_clear_errors(untrained: tuple[Any, Any], run: Run) -> None:
    model, tokenizer = untrained
    with pytest.raises(ConfigError, match="none of the save methods"):
        track(object(), base_model=run.build)
    with pytest.raises(ConfigError, match="cannot tell which base model"):
        track(types.SimpleNamespace(save_pretrained=lambda d: None))
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        track(model, tokenizer, base_model="bastion-test/never-downloaded", cache_dir=run.cache, strict=True)
    with pytest.raises(BastionError, match="not an existing path and not a Hugging Face repo id"):
        track(model, tokenizer, base_model="/no/such/model")
    untrack(model)


def test_sibling_folders_of_a_save_are_found(tmp_path: Path) -> None:
    import time

    started = time.time()
    for name in ("model", "model-fp8", "model-torchao-int8", "model_gguf", "model_other", "modelx-fp8"):
        (tmp_path / name).mkdir()
    (tmp_path / "model-old").mkdir()
    os.utime(tmp_path / "model-old", (started - 3600, started - 3600))  # left from an earlier export
    found = UnslothCallback._siblings(tmp_path / "model", None, started)
    assert sorted(p.name for p in found) == ["model-fp8", "model-torchao-int8", "model_gguf"]
    returned = UnslothCallback._siblings(tmp_path / "model", {"gguf_directory": str(tmp_path / "model_other")}, started)
    assert returned[0] == tmp_path / "model_other"
