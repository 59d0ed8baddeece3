"""Real signed fine-tuning runs for the registry tests: tiny LoRA runs with the transformers callback,
shared datasets, and a real merge (``merge_and_unload``) that a later run trains on.

The runs (every one signed with one key, base model built locally):

==== ====================== ================= ============ =====================================
run  base model             train             eval         notes
==== ====================== ================= ============ =====================================
r1   tiny                   ``a``             ``e1``       its merged model (``merged1``) has its own record
r2   merged1 (r1's merge)   ``b``             ``e2``       ``e2`` holds one record of ``a``: contamination
r3   tiny                   ``b``             --
r4   tiny                   ``a2``            --           ``a`` with 2 records removed, 3 added (a diff)
r5   tiny                   ``d``             --
==== ====================== ================= ============ =====================================

``x`` (``b``'s 3rd record) is in the training data of exactly r2 and r3.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[2] / "plugins" / "hf"))

from hf_helpers import make_trainer


@dataclass(frozen=True)
class LineageRuns:
    root: Path
    public_key: Path
    tiny: Path
    data: dict[str, Path]
    runs: dict[str, Path]
    merged1: Path
    x_record: dict[str, Any]
    x_line: str
    contaminating: dict[str, Any]


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records), encoding="utf-8")
    return path


def build(root: Path) -> LineageRuns:
    from bastion.plugins.hf import BastionCallback
    from bastion.plugins.hf.tiny import _conversations, build_tiny_model
    from bastion.provenance.inputs import DatasetInput
    from bastion.provenance.signing import generate_key_pair

    root.mkdir(parents=True, exist_ok=True)
    keys = generate_key_pair(root / "keys")
    signing = {"backend": "key", "private_key": str(keys.private_key)}
    tiny = build_tiny_model(root / "tiny-llama")
    convs = _conversations()
    d = root / "data"
    d.mkdir()
    data = {
        "a": _write(d / "a.jsonl", convs[0:12]),
        "b": _write(d / "b.jsonl", convs[12:24]),
        "d": _write(d / "d.jsonl", convs[24:36]),
        "e1": _write(d / "e1.jsonl", convs[40:44]),
        "e2": _write(d / "e2.jsonl", [*convs[44:47], convs[5]]),  # convs[5] is a's 6th record
        "a2": _write(d / "a2.jsonl", [*convs[2:12], *convs[60:63]]),
    }

    def train(name: str, base: Path, train_set: str, eval_set: str | None, merge_to: Path | None = None) -> Path:
        out = root / "runs" / name
        datasets = [DatasetInput(data[train_set], "train")]
        if eval_set:
            datasets.append(DatasetInput(data[eval_set], "eval"))
        cb = BastionCallback(base_model=base, datasets=datasets, signing=signing, strict=True)
        trainer = make_trainer(base, out, data[train_set], data[eval_set] if eval_set else None, [cb], max_steps=1)
        trainer.train()
        trainer.save_model()
        if merge_to is not None:
            from transformers import AutoTokenizer

            trainer.model.merge_and_unload().save_pretrained(merge_to)
            AutoTokenizer.from_pretrained(base).save_pretrained(merge_to)
            cb.record_export(merge_to, kind="merge", details={"method": "merge_and_unload"})
        cb.finalize()
        return out

    merged1 = root / "merged" / "merged1"
    runs = {"r1": train("r1", tiny, "a", "e1", merge_to=merged1)}
    runs["r2"] = train("r2", merged1, "b", "e2")
    runs["r3"] = train("r3", tiny, "b", None)
    runs["r4"] = train("r4", tiny, "a2", None)
    runs["r5"] = train("r5", tiny, "d", None)
    return LineageRuns(
        root=root,
        public_key=keys.public_key,
        tiny=tiny,
        data=data,
        runs=runs,
        merged1=merged1,
        x_record=convs[14],
        x_line=f"{data['b']}:3",
        contaminating=convs[5],
    )
