"""Deploy policies: validated with clear errors (file, line, key), and every rule enforced against signed runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import ConfigError
from bastion.provenance.signing import KeyPair, SigningConfig, sign_run
from bastion.provenance.signing.testing import TestPKI
from bastion.provenance.verify import DeployPolicy, load_policy, parse_policy, verify

BASE = "1" * 64
TRAIN, EVAL, OTHER = "a" * 64, "b" * 64, "e" * 64


def write_policy(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "deploy-policy.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def signed(run_dir: Callable[..., Path], keys: KeyPair) -> Callable[..., Path]:
    def make(**kwargs: object) -> Path:
        out = run_dir(**kwargs)
        sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
        return out

    return make


def test_a_run_meeting_every_rule_passes(signed: Callable[..., Path], keys: KeyPair, tmp_path: Path) -> None:
    policy = write_policy(
        tmp_path,
        {
            "allowed_signers": [{"key": keys.fingerprint}],
            "allowed_base_models": [{"sha256": BASE, "name": "tiny-llama"}],
            "datasets": {"required": [{"sha256": TRAIN, "role": "train"}], "forbidden": [OTHER]},
            "train_eval_overlap": "none",
            "max_age": "30d",
        },
    )
    report = verify(signed(), public_key=keys.public_key, policy=policy)
    assert report.ok, report.lines()
    assert "policy" in report.passed


# (policy, run kwargs, expected check, fragments of the failure line)
RULES: list[tuple[str, dict[str, Any], dict[str, Any], str, tuple[str, ...]]] = [
    (
        "signer",
        {"allowed_signers": [{"key": "sha256:" + "0" * 64}]},
        {},
        "policy.signer",
        ("sha256:0000", "found key sha256:"),
    ),
    ("base-model", {"allowed_base_models": ["2" * 64]}, {}, "policy.base_model", ("222222", "sha256:" + BASE)),
    ("required-dataset", {"datasets": {"required": [OTHER]}}, {}, "policy.datasets.required", ("sha256:" + OTHER,)),
    (
        "required-role",
        {"datasets": {"required": [{"sha256": EVAL, "role": "train"}]}},
        {},
        "policy.datasets.required",
        ("as train",),
    ),
    (
        "forbidden-dataset",
        {"datasets": {"forbidden": [{"sha256": EVAL, "name": "leaked-eval"}]}},
        {},
        "policy.datasets.forbidden",
        ("leaked-eval", "eval.jsonl (eval)"),
    ),
    (
        "overlap",
        {"train_eval_overlap": "none"},
        {"overlap": 3},
        "policy.overlap",
        ("expected 0 shared records", "found 3 shared records"),
    ),
    ("overlap-unknown", {"train_eval_overlap": "none"}, {"overlap": None}, "policy.overlap", ("not computed",)),
    (
        "max-age",
        {"max_age": "7d"},
        {"finished_at": dt.datetime.now(dt.UTC) - dt.timedelta(days=9)},
        "policy.max_age",
        ("older than allowed", "9 days"),
    ),
]


@pytest.mark.parametrize(("policy", "run_kwargs", "check", "fragments"), [pytest.param(*r[1:], id=r[0]) for r in RULES])
def test_each_rule_fails_with_expected_and_found(
    signed: Callable[..., Path],
    keys: KeyPair,
    tmp_path: Path,
    policy: dict[str, Any],
    run_kwargs: dict[str, Any],
    check: str,
    fragments: tuple[str, ...],
) -> None:
    report = verify(signed(**run_kwargs), public_key=keys.public_key, policy=write_policy(tmp_path, policy))
    assert report.reasons() == {check}, report.lines()
    [line] = report.lines()
    for fragment in fragments:
        assert fragment in line


def test_certificate_and_sigstore_signer_rules(run_dir: Callable[..., Path], pki: TestPKI) -> None:
    out = run_dir()
    sign_run(
        out,
        SigningConfig(
            backend="certificate",
            private_key=pki.leaf_key,
            certificate=pki.leaf_cert,
            certificate_chain=(pki.intermediate_cert,),
        ),
    )
    ok = DeployPolicy.model_validate(
        {"allowed_signers": [{"certificate": {"san": pki.leaf_email, "issuer": "CN=Acme Signing CA,O=Acme"}}]}
    )
    assert verify(out, certificate_chain=[pki.root_cert], policy=ok).ok
    wrong = DeployPolicy.model_validate(
        {
            "allowed_signers": [
                {"certificate": {"san": "someone@else.example"}},
                {"sigstore": {"identity": pki.leaf_email, "issuer": "x"}},
            ]
        }
    )
    report = verify(out, certificate_chain=[pki.root_cert], policy=wrong)
    assert report.reasons() == {"policy.signer"}
    assert "san=ml-release@acme.example" in report.lines()[0]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("allowed_signers:\n  - key: abc\n", "deploy-policy.yaml:2: allowed_signers[0].key: must be a SHA-256 digest"),
        (
            "allowed_signers:\n  - {}\n",
            "allowed_signers[0]: each entry needs exactly one of key, certificate, sigstore",
        ),
        ("max_age: 30\n", "deploy-policy.yaml:1: max_age: give a unit"),
        ("max_age: soon\n", "max_age: 'soon' is not a duration"),
        # fuzz finding: a duration past timedelta's range raised OverflowError, not a located error
        ("max_age: " + "1" * 70 + "h\n", "deploy-policy.yaml:1: max_age: '" + "1" * 70 + "h' is too long a duration"),
        ("max_age: 1000000000d\n", "the longest is 999999999d"),
        # a long bad value is shown by its start and its length, not repeated whole
        ("max_age: " + "1" * 5000 + "h\n", "max_age: '" + "1" * 80 + "'… (5001 characters) is too long a duration"),
        ("train_eval_overlap: little\n", "train_eval_overlap: Input should be 'none' or 'any'"),
        (
            "datasets:\n  required: [abc]\n",
            "deploy-policy.yaml:2: datasets.required[0].sha256: must be a SHA-256 digest",
        ),
        ("datasets:\n  forbiden: []\n", "deploy-policy.yaml:2: datasets.forbiden: unknown key"),
        ("alowed_signers: []\n", "deploy-policy.yaml:1: alowed_signers: unknown key"),
        ("allowed_signers:\n  - certificate: {}\n", "allowed_signers[0].certificate: give at least one of"),
        ("- just a list\n", "must be a mapping"),
        ("key: [unclosed\n", "deploy-policy.yaml:2: not valid YAML"),
        ("version: 2\n", "version: Input should be 1"),
    ],
)
def test_invalid_policies_name_file_line_and_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "deploy-policy.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_policy(path)
    assert fragment in str(err.value)


def test_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="deploy policy not found"):
        load_policy(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="deploy policy is empty"):  # it would allow any signed run
        parse_policy("")


def test_durations() -> None:
    assert parse_policy("max_age: 12h").max_age == dt.timedelta(hours=12)
    assert parse_policy("max_age: 2w").max_age == dt.timedelta(weeks=2)
    assert parse_policy("max_age: 90m").max_age == dt.timedelta(minutes=90)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(
                st.sampled_from(
                    ["allowed_signers", "key", "certificate", "san", "datasets", "required", "max_age", "sha256", "x"]
                ),
                children,
                max_size=3,
            ),
        ),
        max_leaves=10,
    )
)
def test_any_yaml_document_gives_a_policy_or_a_config_error(data: Any) -> None:
    text = yaml.safe_dump(data)
    try:
        parse_policy(text, source="p.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("p.yaml")
