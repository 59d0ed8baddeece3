"""The deploy-policy loader: every malformed file is a located ConfigError (exit 2), never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.provenance.verify.policy import load_policy, parse_policy

HOSTILE = [
    ("version: !!int zz\n", 1, "cannot be read as 'int'"),
    ("max_age: !!float y\n", 1, "cannot be read as 'float'"),
    ("allowed_signers:\n  - key: !!float\n", 2, "cannot be read as 'float'"),
    ("max_age: !!timestamp nope\n", 1, "cannot be read as 'timestamp'"),
    ("allowed_signers: " + "[" * 500 + "]" * 500 + "\n", 1, "nested more than 64 levels"),
    ("max_age: 3\x07d\n", 1, "control character #x0007"),
    ("max_age: 3d\nmax_age: 300d\n", 2, "the key 'max_age' appears twice"),
    ("max_age: !!python/name:os.system\n", 1, "could not determine a constructor"),
]


@pytest.mark.parametrize(("text", "line", "needle"), HOSTILE)
def test_yaml_problems_are_located_config_errors(tmp_path: Path, text: str, line: int, needle: str) -> None:
    p = tmp_path / "deploy.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_policy(p)
    assert info.value.message.startswith(f"{p}:{line}: not valid YAML: "), info.value.message
    assert needle in info.value.message


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing yet\n", "{}\n", "---\n"])
def test_an_empty_deploy_policy_is_refused(tmp_path: Path, text: str) -> None:
    p = tmp_path / "deploy.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"deploy\.yaml:1: the deploy policy is empty"):
        load_policy(p)


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "deploy.yaml"
    p.write_bytes(b"max_age: 3d\nallowed_signers:\n  - key: \xff\n")
    with pytest.raises(ConfigError, match=r"deploy\.yaml:3: the deploy policy is not valid UTF-8"):
        load_policy(p)


def test_a_minimal_policy_still_loads() -> None:
    assert parse_policy("max_age: 30d\n").max_age is not None


def test_verify_cli_exits_2_for_a_hostile_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.cli.main import main

    p = tmp_path / "deploy.yaml"
    p.write_text("version: !!int zz\n")
    with pytest.raises(SystemExit) as info:
        main(["verify", str(tmp_path), "--policy", str(p)])
    err = capsys.readouterr().err
    assert info.value.code == 2, err
    assert f"{p}:1: not valid YAML" in err and "Traceback" not in err


def test_an_unknown_key_with_a_line_break_is_one_escaped_error_line() -> None:
    # (fuzz find: a flow-mapping key spanning two lines was echoed as is, so the error had a line without
    # its file:line prefix)
    with pytest.raises(ConfigError) as info:
        parse_policy('allowed_signers:\n  - certificate: {"s\\r\\nx": 1, issuer: "CN=CA"}\n', source="d.yaml")
    lines = info.value.message.splitlines()
    assert lines and all(line.startswith("d.yaml:") for line in lines)
    assert "certificate.s\\r\\nx: unknown key" in info.value.message
