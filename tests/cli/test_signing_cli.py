"""``bastion keygen`` and ``bastion sign``."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run

from bastion.provenance.signing.testing import make_run_dir, make_test_pki


def test_keygen_prints_paths_and_fingerprint_never_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "keygen", "--out", str(tmp_path / "keys"))
    assert code == 0, err
    private = (tmp_path / "keys" / "signing.pem").read_text()
    body = "".join(private.splitlines()[1:-1])
    assert body[:40] not in out + err and "PRIVATE KEY" not in out + err
    assert "fingerprint: sha256:" in out and "allowed_signers" in out
    code, out, err = run(capsys, "keygen", "--out", str(tmp_path / "keys"))
    assert code == 2 and "refusing to overwrite" in err and "Traceback" not in err


def test_keygen_with_password_from_env(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_KEY_PW", "pw-value-never-printed")
    code, out, err = run(capsys, "keygen", "--out", str(tmp_path), "--password-env", "BASTION_KEY_PW")
    assert code == 0, err
    assert "pw-value-never-printed" not in out + err and "encrypted" in out
    assert b"ENCRYPTED PRIVATE KEY" in (tmp_path / "signing.pem").read_bytes()
    monkeypatch.delenv("BASTION_KEY_PW")
    code, _, err = run(capsys, "keygen", "--out", str(tmp_path / "k2"), "--password-env", "BASTION_KEY_PW")
    assert code == 2 and "BASTION_KEY_PW is not set" in err


def test_sign_with_key_prints_a_working_stock_one_liner(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "keygen", "--out", str(tmp_path / "keys"))
    out_dir = make_run_dir(tmp_path / "out")
    code, out, err = run(capsys, "sign", str(out_dir), "--key", str(tmp_path / "keys" / "signing.pem"))
    assert code == 0, err
    assert "statement bundle:" in out and "model signature:" in out
    [stock] = [line.split("stock check:", 1)[1].strip() for line in out.splitlines() if "stock check:" in line]
    argv = shlex.split(stock)
    assert argv[:3] == ["model_signing", "verify", "key"]
    argv[0] = str(Path(sys.executable).parent / "model_signing")
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_sign_with_certificate_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = make_test_pki(tmp_path / "pki")
    out_dir = make_run_dir(tmp_path / "out")
    code, out, err = run(
        capsys,
        "sign",
        str(out_dir),
        "--key",
        str(pki.leaf_key),
        "--certificate",
        str(pki.leaf_cert),
        "--chain",
        str(pki.intermediate_cert),
        "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["backend"] == "certificate" and data["identity"]["san"] == [pki.leaf_email]
    assert data["files"] == 4


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "choose a backend"),
        (("--sigstore", "--key", "k.pem"), "keyless"),
        (("--key", "k.pem", "--trust-config", "t.json"), "need --sigstore"),
        (("--key", "k.pem", "--chain", "c.pem"), "--chain needs --certificate"),
    ],
)
def test_sign_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], fragment: str
) -> None:
    code, _, err = run(capsys, "sign", str(tmp_path), *args)
    assert code == 2 and fragment in err


def test_sign_needs_a_statement_unless_told_otherwise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "keygen", "--out", str(tmp_path / "keys"))
    ckpt = tmp_path / "checkpoint-5"
    ckpt.mkdir()
    (ckpt / "model.safetensors").write_bytes(b"\0" * 64)
    code, _, err = run(capsys, "sign", str(ckpt), "--key", str(tmp_path / "keys" / "signing.pem"))
    assert code == 2 and "statement not found" in err and "Traceback" not in err
    code, out, err = run(
        capsys, "sign", str(ckpt), "--key", str(tmp_path / "keys" / "signing.pem"), "--allow-no-statement"
    )
    assert code == 0, err
    assert (ckpt / "bastion" / "model.sig").is_file() and "statement bundle" not in out


def test_sign_sigstore_with_a_bad_trust_config_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = make_run_dir(tmp_path / "out")
    (tmp_path / "tc.json").write_text("{}")
    code, _, err = run(capsys, "sign", str(out_dir), "--sigstore", "--trust-config", str(tmp_path / "tc.json"))
    assert (code == 2 and "--trust-config" not in err) or "trust_config" in err
    assert "Traceback" not in err


def test_sign_refuses_a_directory_with_links_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    run(capsys, "keygen", "--out", str(tmp_path / "keys"))
    out_dir = make_run_dir(tmp_path / "out")
    (out_dir / "checkpoint-99").symlink_to("nested", target_is_directory=True)
    os.mkfifo(out_dir / "model-00002.safetensors")
    code, _, err = run(capsys, "sign", str(out_dir), "--key", str(tmp_path / "keys" / "signing.pem"))
    assert code == 2 and "Traceback" not in err
    assert "checkpoint-99: symbolic link to a directory" in err and "model-00002.safetensors: FIFO" in err
    assert "replace links with copies" in err
    assert not (out_dir / "bastion" / "model.sig").exists()
