"""The typed run predicate: parse() names the broken field, to_json() writes v1, legacy records still verify."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.provenance.predicate import (
    ACCEPTED_PREDICATE_TYPES,
    LEGACY_PREDICATE_TYPES,
    PREDICATE_TYPE,
    PredicateError,
    RunPredicate,
)
from bastion.provenance.signing import KeyPair, SigningConfig, sign_run
from bastion.provenance.verify import verify

GOLDEN = Path(__file__).parent / "golden"


def golden_predicate() -> dict[str, Any]:
    pred: dict[str, Any] = json.loads((GOLDEN / "statement.json").read_text(encoding="utf-8"))["predicate"]
    pred["environment"] = {"python": "3.11"}
    pred["ledger"]["head"] = "0" * 64
    return pred


def test_the_predicate_type_is_a_urn_and_the_old_name_is_still_accepted() -> None:
    assert PREDICATE_TYPE.startswith("urn:uuid:")
    assert "https://bastion.dev/provenance/training-run/v1" in LEGACY_PREDICATE_TYPES
    assert set(ACCEPTED_PREDICATE_TYPES) == {PREDICATE_TYPE, *LEGACY_PREDICATE_TYPES}


def test_parse_reads_every_field() -> None:
    pred = RunPredicate.parse(golden_predicate())
    assert pred.run_id == "golden-run" and pred.framework == "transformers" and pred.strict is True
    assert pred.base_model is not None and len(pred.base_model.files) == 2
    assert [(d.name, d.role, d.records) for d in pred.datasets] == [
        ("train.jsonl", "train", 6),
        ("eval.jsonl", "eval", 2),
    ]
    assert pred.overlap == 1
    assert pred.config is not None and pred.config.value["hub_token"] == "[REDACTED]"
    assert pred.metrics.non_finite == {"grad_norm": "NaN"} and pred.metrics.final["loss"] == 1.5
    assert pred.ledger.entries == 8
    assert pred.datasets_with_role("eval")[0].name == "eval.jsonl"


def test_round_trip_is_exact() -> None:
    raw = golden_predicate()
    assert RunPredicate.parse(raw).to_json() == raw
    export = json.loads((GOLDEN / "export-statement.json").read_text(encoding="utf-8"))["predicate"]
    export["environment"] = {"python": "3.11"}
    parsed = RunPredicate.parse(export)
    assert parsed.exports["merge"].path == "merged" and parsed.exports["merge"].details == {
        "method": "merge_and_unload"
    }
    assert parsed.to_json() == export


def test_minimal_and_older_records_parse_with_empty_defaults() -> None:
    pred = RunPredicate.parse(
        {"run_id": "r", "ledger": {"path": "bastion/ledger.jsonl", "head": "a" * 64, "entries": 2}}
    )
    assert pred.datasets == () and pred.base_model is None and pred.overlap is None and pred.metrics.global_step == 0


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(pred: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = pred
        for p in parents:
            node = node[int(p)] if p.isdigit() else node[p]
        if value is KeyError:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return edit


BAD: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    ("no-run-id", _set("run_id", KeyError), "predicate.run_id: expected a string, missing"),
    ("run-id-number", _set("run_id", 5), "predicate.run_id: expected a string, found a number"),
    ("no-ledger", _set("ledger", KeyError), "predicate.ledger: expected an object, missing"),
    ("ledger-head-number", _set("ledger.head", 5), "predicate.ledger.head: expected a string, found a number"),
    (
        "ledger-entries-str",
        _set("ledger.entries", "8"),
        "predicate.ledger.entries: expected an integer, found a string",
    ),
    ("datasets-not-list", _set("datasets", "x"), "predicate.datasets: expected a list, found a string"),
    ("dataset-no-digest", _set("datasets.1.digest", KeyError), "predicate.datasets[1].digest: expected an object"),
    (
        "dataset-sha-null",
        _set("datasets.0.digest.sha256", None),
        "predicate.datasets[0].digest.sha256: expected a string",
    ),
    ("records-bool", _set("datasets.0.records", True), "predicate.datasets[0].records: expected an integer"),
    ("base-model-number", _set("base_model", 7), "predicate.base_model: expected an object, found a number"),
    ("file-no-name", _set("base_model.files.0.name", KeyError), "predicate.base_model.files[0].name"),
    ("metric-string", _set("metrics.final.loss", "low"), "predicate.metrics.final.loss: expected a number"),
    ("strict-string", _set("strict", "yes"), "predicate.strict: expected true or false"),
    ("overlap-list", _set("overlap", []), "predicate.overlap: expected an object, found a list"),
    ("warnings-numbers", _set("warnings", [1]), "predicate.warnings[0]: expected a string"),
    ("env-list", _set("environment", [1, 2]), "predicate.environment: expected an object, found a list"),
    ("export-no-path", _set("merge", {"method": "x"}), "predicate.merge.path: expected a string, missing"),
]


@pytest.mark.parametrize(("edit", "message"), [pytest.param(e, m, id=i) for i, e, m in BAD])
def test_parse_names_the_broken_field(edit: Callable[[dict[str, Any]], None], message: str) -> None:
    raw = golden_predicate()
    edit(raw)
    with pytest.raises(PredicateError) as info:
        RunPredicate.parse(raw)
    assert message in str(info.value)
    assert "hint:" in str(info.value)


def test_parse_refuses_a_non_object() -> None:
    with pytest.raises(PredicateError, match="predicate: expected an object, found a list"):
        RunPredicate.parse([1])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(golden_predicate())), json_values)
def test_parse_either_reads_a_field_or_names_it(key: str, value: Any) -> None:
    raw = copy.deepcopy(golden_predicate())
    raw[key] = value
    try:
        RunPredicate.parse(raw)
    except PredicateError as exc:
        assert "predicate." in exc.message


def test_a_record_signed_with_the_legacy_predicate_type_still_verifies(
    run_dir: Callable[..., Path], keys: KeyPair
) -> None:
    out = run_dir()
    path = out / "bastion" / "statement.json"
    statement = json.loads(path.read_text(encoding="utf-8"))
    statement["predicateType"] = LEGACY_PREDICATE_TYPES[0]
    path.write_text(json.dumps(statement, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    report = verify(out, public_key=keys.public_key)
    assert report.ok, report.lines()
    statement["predicateType"] = "https://example.com/some-other/v1"
    other = run_dir("other")
    (other / "bastion" / "statement.json").write_text(json.dumps(statement), encoding="utf-8")
    sign_run(other, SigningConfig(backend="key", private_key=keys.private_key))
    assert "statement.invalid" in verify(other, public_key=keys.public_key).reasons()
