"""The ``bastion_*`` keys go through Axolotl's own config validation (the plugin's input args).

In-process through ``axolotl.utils.config.validate_config`` for a table of bad values, and once
through the real CLI to show what a user sees for a misspelt key.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.framework

PLUGIN = "bastion.plugins.axolotl.BastionPlugin"


@pytest.fixture(scope="module")
def validate(base_config: str, axolotl_importable: None) -> Iterator[Callable[[dict[str, Any]], Any]]:
    """Validate ``base_config`` + the plugin + extra keys with Axolotl's plugin-extended schema."""
    env = pytest.MonkeyPatch()
    env.setenv("HF_HUB_OFFLINE", "1")  # importing Axolotl must not reach out for kernels
    env.setenv("AXOLOTL_DO_NOT_TRACK", "1")
    from axolotl.integrations.base import PluginManager
    from axolotl.utils.config import validate_config
    from axolotl.utils.dict import DictDefault

    PluginManager.get_instance().register(PLUGIN)
    base = yaml.safe_load(base_config)

    def run(extra: dict[str, Any]) -> Any:
        return validate_config(DictDefault({**base, "plugins": [PLUGIN], **extra}))

    yield run
    env.undo()


def test_defaults_are_filled_in_by_axolotl(validate: Callable[[dict[str, Any]], Any]) -> None:
    cfg = validate({})
    assert cfg["bastion_strict"] is False
    assert cfg["bastion_sign_checkpoints"] is False
    assert cfg["bastion_fsync"] == "interval"
    assert cfg.get("bastion_signing") is None


def test_valid_settings_pass(validate: Callable[[dict[str, Any]], Any], tmp_path: Path) -> None:
    from bastion.provenance.signing import generate_key_pair

    keys = generate_key_pair(tmp_path / "keys")
    cfg = validate(
        {
            "bastion_strict": True,
            "bastion_signing": {"backend": "key", "private_key": str(keys.private_key)},
            "bastion_sign_checkpoints": True,
            "bastion_fsync": "always",
        }
    )
    assert cfg["bastion_strict"] is True
    assert cfg["bastion_signing"] == {"backend": "key", "private_key": str(keys.private_key)}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"bastion_strickt": True}, "unknown config key 'bastion_strickt' (did you mean 'bastion_strict'?)"),
        ({"bastion_sign": {"backend": "key"}}, "unknown config key 'bastion_sign'"),
        ({"bastion_strict": "perhaps"}, "bastion_strict"),
        ({"bastion_fsync": "sometimes"}, "bastion_fsync"),
        ({"bastion_signing": "keys/signing.pem"}, "bastion_signing must be a mapping"),
        ({"bastion_signing": {"backend": "hsm"}}, "bastion_signing: backend: Input should be 'key'"),
        ({"bastion_signing": {"backend": "key"}}, "bastion_signing: private_key: required for backend 'key'"),
        (
            {"bastion_signing": {"backend": "key", "private_key": "no/such/key.pem"}},
            "bastion_signing.private_key: file not found",
        ),
        ({"bastion_signing": {"backend": "key", "pivate_key": "k.pem"}}, "bastion_signing: pivate_key: unknown key"),
        ({"bastion_sign_checkpoints": True}, "bastion_sign_checkpoints: true needs bastion_signing"),
    ],
)
def test_bad_settings_are_rejected_by_axolotl(
    validate: Callable[[dict[str, Any]], Any], extra: dict[str, Any], message: str
) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        validate(extra)
    assert message in str(info.value)


def test_cli_rejects_a_misspelt_key_before_loading_anything(
    make_project: Callable[[str], Path],
    run_axolotl: Callable[..., subprocess.CompletedProcess[str]],
    base_config: str,
    plugin_lines: str,
) -> None:
    project = make_project("axolotl-badkey")
    (project / "axolotl.yml").write_text(plugin_lines + base_config + "bastion_strickt: true\n", encoding="utf-8")
    proc = run_axolotl(project, "train", "axolotl.yml", "--launcher", "python", timeout=180)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    assert "unknown config key 'bastion_strickt' (did you mean 'bastion_strict'?)" in output
    assert "valid bastion keys: bastion_strict, bastion_signing" in output
    # Rejected at config validation: no dataset was prepared, nothing was trained.
    assert not (project / "prepared").exists()
    assert not (project / "out" / "adapter_model.safetensors").exists()
    assert not (project / "out" / "bastion" / "ledger.jsonl").exists()


class _Trainer:
    """What ``add_callbacks_post_trainer`` reads from Axolotl's trainer: its tokenizer and datasets."""

    processing_class = None
    train_dataset = None
    eval_dataset = None


def test_strict_mode_stops_before_training_on_an_input_it_cannot_hash(
    validate: Callable[[dict[str, Any]], Any],
    make_project: Callable[[str], Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bastion.plugins.axolotl import BastionPlugin

    monkeypatch.chdir(make_project("axolotl-strict"))
    cfg = validate({"bastion_strict": True, "datasets": [{"path": "someorg/chat-data", "type": "chat_template"}]})
    with pytest.raises(SystemExit) as info:
        BastionPlugin().add_callbacks_post_trainer(cfg, _Trainer())
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "bastion: error: datasets[0].path: 'someorg/chat-data' is not a local file or directory" in err
    assert "bastion_strict is on" in err


def test_without_strict_the_problem_is_kept_for_the_ledger(
    validate: Callable[[dict[str, Any]], Any],
    make_project: Callable[[str], Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bastion.plugins.axolotl import BastionPlugin

    monkeypatch.chdir(make_project("axolotl-lenient"))
    cfg = validate({"datasets": [{"path": "someorg/chat-data", "type": "chat_template"}]})
    plugin = BastionPlugin()
    (callback,) = plugin.add_callbacks_post_trainer(cfg, _Trainer())
    assert callback is plugin.callback and callback.framework == "axolotl"
    assert [code for code, _ in callback.problems] == ["input.not_local"]
    assert callback.base_model == Path("./model")
    assert [(d.name, d.role) for d in callback.datasets] == [("eval.jsonl", "eval")]  # the local one is kept
