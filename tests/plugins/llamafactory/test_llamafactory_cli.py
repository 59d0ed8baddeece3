"""``bastion llamafactory`` without LLaMA-Factory installed: one clear error (default suite, no framework venv)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bastion.cli.main import main


def test_missing_llamafactory_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "llamafactory", None)  # importlib.util.find_spec -> None
    config = tmp_path / "sft.yaml"
    config.write_text("stage: sft\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_info:
        main(["llamafactory", "train", str(config)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: bastion llamafactory train needs llamafactory, which is not installed: " in err
    assert "pip install 'bastion-provenance[llamafactory]'" in err and "tools/envs/llamafactory.sh" in err
    assert "Traceback" not in err


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["llamafactory", "train"])
    assert exit_info.value.code == 2
    assert "missing the training config" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["llamafactory", "train", "--sign-key-password-env", "PW", "sft.yaml"])
    assert exit_info.value.code == 2
    assert "--sign-key-password-env needs --sign-key" in capsys.readouterr().err
