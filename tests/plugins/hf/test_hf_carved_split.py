"""A real Trainer run on an eval split carved from the training file with ``train_test_split``."""

from __future__ import annotations

from pathlib import Path

from bastion.plugins.hf import BastionCallback, DatasetInput
from bastion.plugins.hf.tiny import tokenize_chat_jsonl
from bastion.provenance import hash_dataset, load_statement
from bastion.provenance.merkle import MerkleTree, leaf_hash
from bastion.provenance.predicate import RunPredicate


def test_carved_eval_split_is_recorded_with_its_parent_and_overlap(
    tiny_model_dir: Path, data: dict[str, Path], tmp_path: Path
) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    # The training file with one conversation repeated, so a duplicate can straddle the split.
    lines = data["train"].read_text(encoding="utf-8").splitlines(keepends=True)
    source = tmp_path / "all.jsonl"
    source.write_text("".join(lines + lines[:3]), encoding="utf-8")

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    full = tokenize_chat_jsonl(tok, source)
    full = full.add_column("position", list(range(len(full))))
    parts = full.train_test_split(test_size=0.2, seed=11)  # what the user's script does

    out = tmp_path / "out"
    train_side, eval_side = DatasetInput.carved(source, test_size=0.2, seed=11)
    cb = BastionCallback(base_model=tiny_model_dir, datasets=[train_side, eval_side])
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="steps",
        eval_steps=2,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=7,
    )
    trainer = Trainer(model=model, args=args, train_dataset=parts["train"], eval_dataset=parts["test"], callbacks=[cb])
    trainer.train()
    trainer.save_model()
    pred = RunPredicate.parse(load_statement(cb.finalize() or Path())["predicate"])

    parent = hash_dataset(source)
    train_pos, eval_pos = list(parts["train"]["position"]), list(parts["test"]["position"])
    by_role = {d.role: d for d in pred.datasets}
    assert set(by_role) == {"train", "eval"} and len(pred.datasets) == 2  # the parent is not a third input
    for role, positions in (("train", train_pos), ("eval", eval_pos)):
        side = by_role[role]
        digests = [parent.record_digests[i] for i in positions]  # the records the Trainer really got
        assert side.records == len(positions)
        assert side.merkle_root == MerkleTree([leaf_hash(bytes.fromhex(d)) for d in digests]).root
        assert side.split is not None
        assert side.split["parent"] == {
            "name": "all.jsonl",
            "digest": {"sha256": parent.sha256},
            "records": parent.records,
            "merkle_root": parent.merkle_root,
        }
        assert side.split["test_size"] == 0.2 and side.split["seed"] == 11 and side.split["shuffle"] is True
    seen = {parent.record_digests[i] for i in train_pos}
    expected_overlap = sum(1 for i in eval_pos if parent.record_digests[i] in seen)
    assert pred.overlap == expected_overlap
    assert "eval_loss" in pred.metrics.final  # the run did evaluate on that split
