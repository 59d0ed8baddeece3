"""``bastion verify``: exit 0 only when everything holds, 1 with one line per failed check, 2 for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run

from bastion.provenance.signing import SigningConfig, generate_key_pair, sign_run
from bastion.provenance.signing.testing import make_run_dir


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path]:
    keys = generate_key_pair(tmp_path / "keys")
    out = make_run_dir(tmp_path / "out")
    sign_run(out, SigningConfig(backend="key", private_key=keys.private_key))
    return out, keys.public_key


def test_verify_ok(signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, pub = signed
    code, stdout, err = run(capsys, "verify", str(out), "--key", str(pub))
    assert code == 0, stdout + err
    assert stdout.startswith(f"OK {out}: 4 files, signed by key sha256:")
    assert "checks: signature, statement, subjects, model_signature, ledger" in stdout


def test_verify_failures_one_line_each(signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, pub = signed
    (out / "adapter_config.json").write_text('{"r": 1}\n')
    (out / "tokenizer_config.json").unlink()
    code, stdout, _ = run(capsys, "verify", str(out), "--key", str(pub))
    assert code == 1
    lines = stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("FAIL subject.missing: tokenizer_config.json") and "expected sha256:" in lines[0]
    assert lines[1].startswith("FAIL subject.modified: adapter_config.json") and "found sha256:" in lines[1]


def test_verify_json(signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    out, pub = signed
    policy = tmp_path / "policy.yaml"
    policy.write_text("allowed_base_models: ['" + "9" * 64 + "']\nmax_age: 1d\n")
    code, stdout, _ = run(capsys, "verify", str(out), "--key", str(pub), "--policy", str(policy), "--json")
    assert code == 1
    data = json.loads(stdout)
    assert data["ok"] is False
    assert [f["check"] for f in data["failures"]] == ["policy.base_model"]
    assert data["failures"][0]["found"] == "sha256:" + "1" * 64


def test_bad_policy_and_missing_key_exit_2_without_traceback(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, pub = signed
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_age: 3\n")
    code, _, err = run(capsys, "verify", str(out), "--key", str(pub), "--policy", str(policy))
    assert code == 2 and f"{policy}:1: max_age: give a unit" in err and "Traceback" not in err
    code, _, err = run(capsys, "verify", str(out), "--key", str(tmp_path / "missing.pub"))
    assert code == 2 and "public key not found" in err


def test_verify_without_trust_fails(signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = signed
    code, stdout, _ = run(capsys, "verify", str(out))
    assert code == 1 and "FAIL trust.missing" in stdout


def test_private_key_given_as_key_says_so(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out, _ = signed
    private = tmp_path / "keys" / "signing.pem"
    assert private.is_file()
    code, stdout, err = run(capsys, "verify", str(out), "--key", str(private))
    assert code == 2 and "Traceback" not in err
    assert "this is a PRIVATE key; a verifier needs the PUBLIC key" in err and str(private) in err
    assert ".pub" in err  # what to pass instead
    assert "BEGIN" not in err + stdout  # nothing of the key itself is echoed


def test_verify_a_file_says_it_is_a_file(signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    out, pub = signed
    weights = out / "adapter_model.safetensors"
    code, stdout, _ = run(capsys, "verify", str(weights), "--key", str(pub))
    assert code == 1
    assert f"FAIL record.missing: {weights} is a file; expected the training output directory" in stdout
    assert "not found" not in stdout
    code, stdout, _ = run(capsys, "verify", str(out / "nope"), "--key", str(pub))
    assert code == 1 and f"artifact directory not found: {out / 'nope'}" in stdout


@pytest.mark.parametrize("extra", [["--trust-config", "trust.json"], ["--issuer", "CN=Acme Root"]])
def test_sigstore_only_trust_arguments_on_a_key_signed_run_are_refused(
    signed: tuple[Path, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: list[str]
) -> None:
    out, pub = signed
    (tmp_path / "trust.json").write_text("{}")
    args = [a if a != "trust.json" else str(tmp_path / "trust.json") for a in extra]
    code, stdout, _ = run(capsys, "verify", str(out), "--key", str(pub), *args)
    assert code == 1
    [line] = [ln for ln in stdout.splitlines() if ln.startswith("FAIL trust.unused")]
    assert "signed with a bare key" in line and f"{extra[0]}" in line and "would be ignored" in line
    # the same run verifies once the argument that does not apply is dropped
    assert run(capsys, "verify", str(out), "--key", str(pub))[0] == 0
