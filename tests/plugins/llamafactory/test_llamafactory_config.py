"""Reading and checking LLaMA-Factory configs before training: dataset resolution, settings, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lf_support import OFFLINE_ENV, base_config, write_yaml

from bastion.errors import BastionError, ConfigError, InputError

pytestmark = pytest.mark.framework

STRICT = {"strict": True}


def _prepare(config: Any, **kwargs: Any) -> Any:
    from bastion.plugins.llamafactory import prepare

    return prepare(config, **kwargs)


def test_unknown_dataset_name_fails_before_training(
    tmp_path: Path, tiny_model: Path, lf_data: Path, launch: Any
) -> None:
    out = tmp_path / "out"
    cfg = base_config(tiny_model, lf_data, out, "sft")
    cfg["dataset"] = "tiny_chat,tiny_chatt"
    config = write_yaml(tmp_path / "typo.yaml", cfg)

    result = launch(str(config))
    assert result.returncode == 2, result.stderr[-3000:]
    err = result.stderr
    assert "Traceback" not in err
    assert "error: " in err
    assert "'tiny_chatt'" in err and "'dataset'" in err and str(config.name) in err
    assert str(lf_data / "dataset_info.json") in err
    assert "defined names: hub_only, tiny_chat, tiny_chat_eval, tiny_pairs" in err
    assert not out.exists()  # nothing was trained or written: it failed before loading the model


def test_roles_files_and_overrides(tmp_path: Path, tiny_model: Path, lf_data: Path) -> None:
    cfg = base_config(tiny_model, lf_data, tmp_path / "out", "sft")
    cfg["bastion"] = {"fsync": "always"}
    config = write_yaml(tmp_path / "sft.yaml", cfg)
    prepared = _prepare([str(config), "dataset=tiny_chat,tiny_pairs", "learning_rate=5e-4"])

    assert "bastion" not in prepared.args  # LLaMA-Factory never sees Bastion's section
    assert prepared.args["learning_rate"] == 5e-4
    roles = sorted((d.name, d.role, d.path) for d in prepared.callback.datasets)
    assert roles == [
        ("tiny_chat", "train", lf_data / "chat" / "train.jsonl"),
        ("tiny_chat_eval", "eval", lf_data / "chat" / "eval.jsonl"),
        ("tiny_pairs/part-0.json", "preference", lf_data / "pairs" / "part-0.json"),
        ("tiny_pairs/part-1.json", "preference", lf_data / "pairs" / "part-1.json"),
    ]
    cb = prepared.callback
    assert cb.framework == "llamafactory"
    assert cb.base_model == tiny_model and cb.tokenizer == tiny_model
    assert cb.output_dir == tmp_path / "out"
    assert cb.fsync == "always"
    recorded = cb.config
    info = lf_data / "dataset_info.json"
    assert recorded["dataset_info"] == {"path": str(info), "sha256": _sha256(info)}
    assert recorded["llamafactory"]["dataset"] == "tiny_chat,tiny_pairs"


def test_command_line_flags_form_and_json_config(tmp_path: Path, tiny_model: Path, lf_data: Path) -> None:
    cfg = base_config(tiny_model, lf_data, tmp_path / "out", "dpo")
    argv: list[str] = []
    for k in ("model_name_or_path", "stage", "dataset", "dataset_dir", "output_dir", "template", "finetuning_type"):
        argv += [f"--{k}", str(cfg[k])]
    flags = _prepare([*argv, "--hf_hub_token", "hf_SECRET"], strict=True)
    assert [d.role for d in flags.callback.datasets] == ["preference", "preference"]
    assert flags.callback.strict is True
    assert "hf_SECRET" not in json.dumps(flags.callback.config)

    json_cfg = tmp_path / "dpo.json"
    json_cfg.write_text(json.dumps(cfg), encoding="utf-8")
    from_json = _prepare([str(json_cfg), "max_steps=2"])
    assert from_json.args["max_steps"] == 2
    assert [d.role for d in from_json.callback.datasets] == ["preference", "preference"]


@pytest.mark.parametrize(
    ("change", "error", "fragments"),
    [
        ({"eval_dataset": "nope"}, InputError, ["'nope'", "'eval_dataset'", "dataset_info.json"]),
        ({"dataset_dir": "EMPTY"}, InputError, ["dataset_info.json not found", "tiny_chat"]),
        ({"bastion": {"strictt": True}}, ConfigError, ["unknown key bastion.strictt", "strict, signing"]),
        ({"bastion": {"strict": "yes"}}, ConfigError, ["bastion.strict must be true or false"]),
        ({"bastion": {"fsync": "sometimes"}}, ConfigError, ["bastion.fsync must be one of always, interval, never"]),
        ({"bastion": ["strict"]}, ConfigError, ["'bastion' must be a mapping"]),
        ({"dataset": "hub_only", "bastion": STRICT}, InputError, ["'hub_only'", "hf_hub", "cannot be hashed"]),
        ({"model_name_or_path": "org/remote-model", "bastion": STRICT}, InputError, ["not a local directory"]),
    ],
)
def test_bad_inputs_are_named(
    tmp_path: Path,
    tiny_model: Path,
    lf_data: Path,
    change: dict[str, Any],
    error: type[Exception],
    fragments: list[str],
) -> None:
    cfg = base_config(tiny_model, lf_data, tmp_path / "out", "sft")
    if change.get("dataset_dir") == "EMPTY":
        change = {"dataset_dir": str(tmp_path)}
    cfg.update(change)
    config = write_yaml(tmp_path / "cfg.yaml", cfg)
    with pytest.raises(error) as info:
        _prepare(str(config))
    for fragment in fragments:
        assert fragment in str(info.value)
    assert not (tmp_path / "out").exists()


def test_missing_data_file_and_bad_yaml(tmp_path: Path, tiny_model: Path, lf_data: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "dataset_info.json").write_text(json.dumps({"gone": {"file_name": "gone.jsonl"}}), encoding="utf-8")
    cfg = base_config(tiny_model, data, tmp_path / "out", "sft")
    cfg.update(dataset="gone", eval_dataset=None)
    with pytest.raises(InputError) as info:
        _prepare(str(write_yaml(tmp_path / "cfg.yaml", cfg)))
    assert str(data / "gone.jsonl") in str(info.value) and "'gone'" in str(info.value)

    (data / "dataset_info.json").write_text('{"gone": {"file_name": "gone.jsonl"},\n}', encoding="utf-8")
    with pytest.raises(InputError) as info:
        _prepare(str(tmp_path / "cfg.yaml"))
    assert f"{data / 'dataset_info.json'}:2:" in str(info.value)

    broken = tmp_path / "broken.yaml"
    broken.write_text("stage: sft\ndataset: [a, b\noutput_dir: x\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        _prepare(str(broken))
    assert f"{broken}:" in str(info.value) and "invalid YAML" in str(info.value)

    with pytest.raises(ConfigError, match="not KEY=VALUE"):
        _prepare([str(tmp_path / "cfg.yaml"), "--strict"])
    with pytest.raises(InputError, match="training config not found"):
        _prepare(str(tmp_path / "missing.yaml"))


def test_hub_inputs_are_named_not_hashed_without_strict(tmp_path: Path, tiny_model: Path, lf_data: Path) -> None:
    cfg = base_config(tiny_model, lf_data, tmp_path / "out", "sft")
    cfg.update(dataset="tiny_chat,hub_only")
    prepared = _prepare(cfg)
    assert [d.name for d in prepared.callback.datasets] == ["tiny_chat", "tiny_chat_eval"]
    assert prepared.callback.config["unhashed_inputs"] == ["dataset:hub_only:hf_hub:example-org/not-downloaded"]


def test_bad_signing_config_fails_before_training(tmp_path: Path, tiny_model: Path, lf_data: Path) -> None:
    cfg = base_config(tiny_model, lf_data, tmp_path / "out", "sft")
    cfg["bastion"] = {"signing": {"backend": "key", "private_key": str(tmp_path / "nokey.pem")}}
    with pytest.raises(BastionError) as info:
        _prepare(str(write_yaml(tmp_path / "cfg.yaml", cfg)))
    assert "nokey.pem" in str(info.value)
    cfg["bastion"] = {"signing": {"backend": "nope"}}
    with pytest.raises(ConfigError, match="backend"):
        _prepare(str(write_yaml(tmp_path / "cfg.yaml", cfg)))


def test_settings_precedence_and_redaction() -> None:
    from bastion.plugins.llamafactory.settings import BastionSettings
    from bastion.provenance.redaction import redact_argv, redact_secrets

    yaml_settings = BastionSettings.from_mapping({"strict": False, "fsync": "never"}, source="a.yaml")
    merged = yaml_settings.override(strict=True, fsync=None, source="flags")
    assert (merged.strict, merged.fsync, merged.source) == (True, "never", "a.yaml + flags")
    cfg = {"hf_hub_token": "s1", "swanlab_api_key": "s2", "max_new_tokens": 5, "nested": [{"password": "s3"}]}
    assert redact_secrets(cfg).value == {
        "hf_hub_token": "[REDACTED]",
        "swanlab_api_key": "[REDACTED]",
        "max_new_tokens": 5,
        "nested": [{"password": "[REDACTED]"}],
    }
    argv = ["--hf_hub_token", "s1", "--om_hub_token=s2", "--max_new_tokens", "5"]
    redacted = redact_argv(argv)
    assert redacted.value == ["--hf_hub_token", "[REDACTED]", "--om_hub_token=[REDACTED]", "--max_new_tokens", "5"]
    assert redacted.paths == ("/1", "/2")


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_llamafactory_errors_exit_as_llamafactory_cli(
    tmp_path: Path, tiny_model: Path, lf_data: Path, launch: Any
) -> None:
    """A config LLaMA-Factory itself rejects fails the same way under both launchers (exit 1, its message)."""
    import os
    import subprocess
    import sys

    cfg = base_config(tiny_model, lf_data, tmp_path / "out", "sft")
    config = write_yaml(tmp_path / "cfg.yaml", cfg)
    ours = launch(str(config), "learning_rat=1")
    theirs = subprocess.run(
        [str(Path(sys.executable).parent / "llamafactory-cli"), "train", str(config), "learning_rat=1"],
        cwd=tmp_path,
        env={**os.environ, **OFFLINE_ENV},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert ours.returncode == theirs.returncode == 1
    last = "ValueError: Some keys are not used by the HfArgumentParser: ['learning_rat']"
    assert ours.stderr.strip().splitlines()[-1] == theirs.stderr.strip().splitlines()[-1] == last
    assert not (tmp_path / "out").exists()
