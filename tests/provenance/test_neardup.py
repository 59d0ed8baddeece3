"""Near-duplicate train/eval overlap (MinHash/LSH over normalised text): the method, the run record
that carries it, and the deploy-policy rule that checks it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from bastion.cli.main import cli
from bastion.errors import ConfigError
from bastion.provenance import load_statement
from bastion.provenance.inputs import DatasetInput
from bastion.provenance.neardup import NearDupConfig, near_duplicate_overlap, normalise, record_text, shingles
from bastion.provenance.predicate import NearDuplicateOverlap, PredicateError, RunPredicate
from bastion.provenance.recorder import RunRecorder
from bastion.provenance.signing import KeyPair, SigningConfig, sign_run
from bastion.provenance.verify import parse_policy, verify

QUESTION = {
    "messages": [
        {"role": "user", "content": "How do I reset the password of my online banking account?"},
        {"role": "assistant", "content": "Open Settings, choose Security, then follow the reset link we e-mail you."},
    ]
}
# The same record with whitespace, case and punctuation changed: not an exact duplicate.
QUESTION_VARIANT = {
    "messages": [
        {"role": "user", "content": "how do i   RESET the password of my online-banking account"},
        {
            "role": "assistant",
            "content": "open settings; choose security ... then follow the reset link we e mail you!",
        },
    ]
}
DISTINCT = {
    "messages": [
        {"role": "user", "content": "Which documents do I need to open a savings account for my daughter?"},
        {"role": "assistant", "content": "Her birth certificate, your ID and a proof of address are enough."},
    ]
}
FILLER = [
    {"messages": [{"role": "user", "content": f"Explain fee schedule number {i} in plain words."}]} for i in range(20)
]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_normalisation_folds_case_whitespace_and_punctuation() -> None:
    assert normalise("  Hello,\tWORLD!!  It’s\u00a0fine…  ") == "hello world it s fine"
    assert normalise("ＦＵＬＬ-width") == "full width"  # NFKC
    assert record_text(QUESTION_VARIANT).startswith("how do i   RESET")  # roles are not text
    assert shingles("a b", 3) == {b"a b"} and shingles("?!", 3) == set()


def test_a_near_duplicate_pair_is_caught_and_a_distinct_pair_is_not() -> None:
    assert json.dumps(QUESTION) != json.dumps(QUESTION_VARIANT)
    caught = near_duplicate_overlap([*FILLER, QUESTION], [QUESTION_VARIANT], NearDupConfig(threshold=0.8))
    assert (caught.eval_records, caught.eval_total, caught.train_total) == (1, 1, 21)
    distinct = near_duplicate_overlap([*FILLER, QUESTION], [DISTINCT], NearDupConfig(threshold=0.8))
    assert distinct.eval_records == 0
    both = near_duplicate_overlap([*FILLER, QUESTION], [DISTINCT, QUESTION_VARIANT, {"text": "..."}])
    assert (both.eval_records, both.eval_total, both.share) == (1, 3, 1 / 3)


def test_threshold_decides_for_a_partly_rewritten_record() -> None:
    base = "the quick brown fox jumps over the lazy dog near the quiet river bank at dawn today"
    edited = base.replace("quiet", "calm")  # 3 of 15 word 3-grams change: Jaccard 12/18 = 0.67
    loose = near_duplicate_overlap([{"t": base}], [{"t": edited}], NearDupConfig(threshold=0.5, num_perm=256))
    strict = near_duplicate_overlap([{"t": base}], [{"t": edited}], NearDupConfig(threshold=0.9, num_perm=256))
    assert (loose.eval_records, strict.eval_records) == (1, 0)


@pytest.mark.parametrize("chunk", [1 << 16, 7])  # one batch; a batch boundary every few records
def test_batched_signatures_equal_datasketch_minhash_and_lsh_answers(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batched sketcher is datasketch's MinHash (affine32, seed 1) computed many records at a time."""
    from datasketch import LeanMinHash, MinHash, MinHashLSH

    from bastion.provenance import neardup
    from bastion.provenance.neardup import SEED, Sketcher, _QuerySketch

    monkeypatch.setattr(neardup, "CHUNK_SHINGLES", chunk)
    config = NearDupConfig(num_perm=64)
    sketcher = Sketcher(config)
    records = [*FILLER, QUESTION, QUESTION_VARIANT, DISTINCT, {"t": "two words"}, {"t": "!!"}]
    sigs = list(sketcher.signatures(records))
    assert sigs[-1] is None  # no text, no signature
    lsh = MinHashLSH(threshold=0.5, num_perm=64)
    for i, (record, sig) in enumerate(zip(records[:-1], sigs[:-1], strict=True)):
        reference = MinHash(num_perm=64, seed=SEED, hashfunc=int)
        reference.update_batch(int(h) for h in sketcher.shingle_hashes(record))
        assert sig is not None and (sig == reference.hashvalues).all(), i
        lsh.insert(i, LeanMinHash(reference), check_duplication=False)
    for sig, record in zip(sigs[:-1], records[:-1], strict=True):
        reference = MinHash(num_perm=64, seed=SEED, hashfunc=int)
        reference.update_batch(int(h) for h in sketcher.shingle_hashes(record))
        assert sorted(lsh.query(_QuerySketch(sig))) == sorted(lsh.query(reference))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"threshold": 1.5}, "near_duplicates.threshold: Input should be less than or equal to 1"),
        ({"threshold": 0}, "near_duplicates.threshold: Input should be greater than 0"),
        ({"num_perm": 4}, "near_duplicates.num_perm"),
        ({"treshold": 0.8}, "near_duplicates.treshold: unknown key"),
        (0.8, "near_duplicates: expected a mapping"),
    ],
)
def test_config_errors_name_the_key(value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        NearDupConfig.from_mapping(value)


def record_run(tmp: Path, train: list[Any], evals: list[Any], **kwargs: Any) -> Path:
    out = tmp / "out"
    rec = RunRecorder(
        datasets=[
            DatasetInput(write_jsonl(tmp / "train.jsonl", train), "train"),
            DatasetInput(write_jsonl(tmp / "eval.jsonl", evals), "eval"),
        ],
        fsync="never",
        strict=True,
        **kwargs,
    )
    rec.start(out)
    (out / "adapter.bin").write_bytes(b"w")
    rec.train_end(1, 1.0)
    rec.finalize()
    return out


def predicate(out: Path) -> RunPredicate:
    return RunPredicate.parse(load_statement(out / "bastion" / "statement.json")["predicate"])


def test_the_run_record_carries_near_duplicates_next_to_the_exact_overlap(tmp_path: Path) -> None:
    out = record_run(
        tmp_path, [*FILLER, QUESTION], [QUESTION_VARIANT, DISTINCT, FILLER[3]], near_duplicates={"threshold": 0.8}
    )
    pred = predicate(out)
    assert pred.overlap == 1  # FILLER[3], exactly
    near = pred.near_duplicate
    assert near is not None
    assert (near.eval_records, near.eval_total, near.train_total, near.threshold) == (2, 3, 21, 0.8)
    assert (near.method, near.shingle_words, near.num_perm) == ("minhash-lsh", 3, 128)
    assert any("2 of 3 eval record(s) have a near-duplicate" in w for w in pred.warnings)
    # The ledger's inputs entry says the same.
    entries = [json.loads(line) for line in (out / "bastion" / "ledger.jsonl").read_text().splitlines()]
    inputs = next(e for e in entries if e["kind"] == "inputs")
    assert inputs["data"]["overlap"]["near_duplicate"]["eval_records"] == 2
    shown = CliRunner().invoke(cli, ["inspect", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "2 of 3 eval records (MinHash Jaccard >= 0.8)" in " ".join(shown.output.split())


def test_without_the_setting_nothing_changes_in_the_record(tmp_path: Path) -> None:
    pred = predicate(record_run(tmp_path, [QUESTION], [QUESTION_VARIANT]))
    assert pred.near_duplicate is None and pred.overlap == 0
    assert pred.to_json()["overlap"] == {"train_eval_records": 0}


def test_carved_split_sides_are_compared_record_by_record(tmp_path: Path) -> None:
    rows = [*FILLER, QUESTION, QUESTION_VARIANT]
    train, eval_ = DatasetInput.carved(write_jsonl(tmp_path / "all.jsonl", rows), eval_indices=[21, 2])
    out = tmp_path / "out"
    rec = RunRecorder(datasets=[train, eval_], fsync="never", strict=True, near_duplicates={"threshold": 0.8})
    rec.start(out)
    (out / "w.bin").write_bytes(b"w")
    rec.train_end(1, 1.0)
    rec.finalize()
    near = predicate(out).near_duplicate
    assert near is not None and (near.eval_records, near.eval_total, near.train_total) == (1, 2, 20)


def test_bad_setting_fails_a_strict_run_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"near_duplicates\.threshold"):
        record_run(tmp_path, [QUESTION], [DISTINCT], near_duplicates={"threshold": 2})


def test_old_records_without_near_duplicates_still_parse_and_serialise_unchanged() -> None:
    old = {
        "run_id": "r",
        "ledger": {"path": "bastion/ledger.jsonl", "head": None},
        "overlap": {"train_eval_records": 0},
    }
    pred = RunPredicate.parse(old)
    assert pred.near_duplicate is None and pred.to_json()["overlap"] == {"train_eval_records": 0}
    bad = {**old, "overlap": {"train_eval_records": 0, "near_duplicate": {"method": "minhash-lsh", "threshold": "x"}}}
    with pytest.raises(PredicateError, match=r"predicate.overlap.near_duplicate.threshold: expected a number"):
        RunPredicate.parse(bad)


def policy(text: str) -> Any:
    return parse_policy(text, source="deploy-policy.yaml")


def near(eval_records: int, eval_total: int = 100, threshold: float = 0.8) -> NearDuplicateOverlap:
    return NearDuplicateOverlap("minhash-lsh", "n", threshold, 128, 3, eval_records, eval_total, 1000)


@pytest.mark.parametrize(
    ("rule", "record", "problem"),
    [
        ({"max_share": 0.01}, near(1), None),
        ({"max_share": 0.01}, near(2), "too many eval records have a near-duplicate"),
        ({"max_share": 0}, near(1), "too many eval records"),
        ({"max_share": 0.5, "max_threshold": 0.7}, near(0), "looser similarity threshold"),
        ({"max_share": 0.5}, None, "was not computed"),
    ],
)
def test_deploy_rule(rule: dict[str, Any], record: NearDuplicateOverlap | None, problem: str | None) -> None:
    pol = policy(yaml.safe_dump({"near_duplicates": rule}))
    pred = RunPredicate.parse(
        {"run_id": "r", "ledger": {"path": "bastion/ledger.jsonl", "head": None}, "overlap": {"train_eval_records": 0}}
    )
    pred_json = pred.to_json()
    if record is not None:
        pred_json["overlap"]["near_duplicate"] = record.to_json()
    found = [f for f in pol.evaluate({"predicate": pred_json}, None, datetime.now(UTC)) if f[0] != "policy.signer"]
    if problem is None:
        assert found == []
    else:
        assert [f[0] for f in found] == ["policy.near_duplicates"] and problem in found[0][1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "near_duplicates: {max_share: 1%}\n",
            "deploy-policy.yaml:1: near_duplicates.max_share: must be a number",
        ),
        ("near_duplicates: {max_share: 2}\n", "near_duplicates.max_share: Input should be less than or equal to 1"),
        ("near_duplicates: {max_threshold: 0.8}\n", "near_duplicates.max_share: Field required"),
    ],
)
def test_policy_errors_name_the_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        policy(text)


def test_bastion_verify_policy_refuses_a_signed_run_above_the_share(
    tmp_path: Path, keys: KeyPair, run_dir: Callable[..., Path]
) -> None:
    out = record_run(
        tmp_path,
        [*FILLER, QUESTION],
        [QUESTION_VARIANT, DISTINCT],
        near_duplicates={"threshold": 0.8},
        signing=SigningConfig.from_mapping({"backend": "key", "private_key": str(keys.private_key)}),
    )
    strict_policy = tmp_path / "strict.yaml"
    strict_policy.write_text("near_duplicates: {max_share: 0.25, max_threshold: 0.9}\n")
    report = verify(out, public_key=keys.public_key, policy=strict_policy)
    assert report.reasons() == {"policy.near_duplicates"}
    assert "1 of 2 (50.00%) at Jaccard >= 0.8" in report.lines()[0]
    loose = tmp_path / "loose.yaml"
    loose.write_text("near_duplicates: {max_share: 0.5}\n")
    assert verify(out, public_key=keys.public_key, policy=loose).ok
    # A run recorded without the check cannot pass a policy that asks for it.
    plain = run_dir("plain")
    sign_run(plain, {"backend": "key", "private_key": str(keys.private_key)})
    assert "policy.near_duplicates" in verify(plain, public_key=keys.public_key, policy=loose).reasons()
