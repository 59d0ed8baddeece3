"""The verifier and the deploy policy read the typed run predicate (bastion.provenance.predicate)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from bastion.provenance.signing import KeyPair, SigningConfig, sign_run
from bastion.provenance.verify import verify

PARENT = "f" * 64


def signed_with(run_dir: Callable[..., Path], keys: KeyPair, edit: Callable[[dict[str, Any]], None], **kw: Any) -> Path:
    out = run_dir(**kw)
    path = out / "bastion" / "statement.json"
    st = json.loads(path.read_text(encoding="utf-8"))
    edit(st["predicate"])
    path.write_text(json.dumps(st, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    return out


def policy(tmp_path: Path, data: dict[str, Any]) -> Path:
    p = tmp_path / "policy.yaml"
    p.write_text(yaml.safe_dump(data), encoding="utf-8")
    return p


def test_a_signed_but_malformed_predicate_is_refused_naming_the_field(
    run_dir: Callable[..., Path], keys: KeyPair, tmp_path: Path
) -> None:
    def edit(pred: dict[str, Any]) -> None:
        pred["datasets"][1]["digest"] = "b" * 64  # a bare string instead of {"sha256": ...}

    out = signed_with(run_dir, keys, edit)
    report = verify(out, public_key=keys.public_key, policy=policy(tmp_path, {"train_eval_overlap": "none"}))
    assert "signature" in report.passed and "subjects" in report.passed  # the other checks still ran
    bad = [f for f in report.failures if f.check == "statement.invalid"]
    assert len(bad) == 1 and "predicate.datasets[1].digest: expected an object, found a string" in bad[0].message
    assert "policy.predicate" in report.reasons()


CARVED = [
    {
        "name": "all.jsonl[train]",
        "role": "train",
        "digest": {"sha256": "c" * 64},
        "records": 8,
        "merkle_root": "d" * 64,
        "split": {"side": "train", "parent": {"name": "all.jsonl", "digest": {"sha256": PARENT}}, "method": "indices"},
    },
    {
        "name": "all.jsonl[eval]",
        "role": "eval",
        "digest": {"sha256": "e" * 64},
        "records": 2,
        "merkle_root": "0" * 64,
        "split": {"side": "eval", "parent": {"name": "all.jsonl", "digest": {"sha256": PARENT}}, "method": "indices"},
    },
]


def test_a_carved_split_satisfies_and_trips_dataset_rules_by_its_parent(
    run_dir: Callable[..., Path], keys: KeyPair, tmp_path: Path
) -> None:
    out = run_dir(datasets=CARVED)
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    ok = verify(out, public_key=keys.public_key, policy=policy(tmp_path, {"datasets": {"required": [PARENT]}}))
    assert ok.ok, ok.lines()
    as_train = {"datasets": {"required": [{"sha256": PARENT, "role": "train"}]}}
    assert verify(out, public_key=keys.public_key, policy=policy(tmp_path, as_train)).ok
    forbidden = verify(out, public_key=keys.public_key, policy=policy(tmp_path, {"datasets": {"forbidden": [PARENT]}}))
    [line] = forbidden.lines()
    assert (
        "policy.datasets.forbidden" in forbidden.reasons()
        and "all.jsonl[train] (train), all.jsonl[eval] (eval)" in line
    )
