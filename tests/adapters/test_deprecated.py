"""Deprecated fine-tuning APIs (Cohere, Databricks Foundation Model Fine-tuning) are refused when the
gateway's config is loaded, with what, since when and what to do: no adapter is built for them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bastion.adapters import get_provider
from bastion.errors import ConfigError
from bastion.gateway.config import config_from_mapping, load_config

sys.path.insert(0, str(Path(__file__).parents[1] / "gateway"))
from gw_support import POLICY_YAML

BASTION = str(Path(sys.executable).parent / "bastion")
EXPECTED = {
    "cohere": ("Cohere fine-tuning is deprecated", "September 15, 2025", "fireworks"),
    "databricks": ("Foundation Model Fine-tuning is deprecated", "August 14, 2026", "AI Runtime"),
}


@pytest.mark.parametrize("adapter", sorted(EXPECTED))
def test_config_with_a_deprecated_adapter_is_refused_at_load(adapter: str) -> None:
    what, since, todo = EXPECTED[adapter]
    with pytest.raises(ConfigError) as info:
        config_from_mapping(
            {"upstreams": {"legacy": {"base_url": "https://api.example", "adapter": adapter, "jurisdiction": "US"}}},
            source="upstreams.yaml",
        )
    err = info.value
    assert err.message.startswith(f"upstreams.yaml: upstreams.legacy.adapter: adapter '{adapter}' is not supported")
    assert what in err.message and since in err.message and err.hint is not None and todo in err.hint


@pytest.mark.parametrize("adapter", sorted(EXPECTED))
def test_an_upstream_named_after_a_deprecated_provider_is_refused_too(adapter: str) -> None:
    with pytest.raises(ConfigError, match=f"upstreams.{adapter}.adapter: .*deprecated"):
        config_from_mapping({"upstreams": {adapter: {"base_url": "https://api.example", "jurisdiction": "US"}}})
    with pytest.raises(ConfigError, match="deprecated"):
        get_provider(adapter)


def test_an_upstream_named_cohere_with_a_live_adapter_is_fine() -> None:
    cfg = config_from_mapping(
        {"upstreams": {"cohere": {"base_url": "https://api.example", "adapter": "openai", "jurisdiction": "US"}}}
    )
    assert cfg.adapter_name("cohere") == "openai"


def test_load_config_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "u.yaml"
    path.write_text("upstreams:\n  dbx:\n    base_url: https://adb-1.azuredatabricks.net\n    adapter: databricks\n")
    with pytest.raises(ConfigError, match=r"u\.yaml: upstreams\.dbx\.adapter: adapter 'databricks'"):
        load_config(path)


@pytest.mark.parametrize("adapter", sorted(EXPECTED))
def test_bastion_gateway_cli_says_it_is_deprecated_without_a_traceback(tmp_path: Path, adapter: str) -> None:
    (tmp_path / "p.yaml").write_text(POLICY_YAML)
    (tmp_path / "u.yaml").write_text(
        f"upstreams:\n  legacy:\n    base_url: https://api.example\n    adapter: {adapter}\n    jurisdiction: US\n"
    )
    r = subprocess.run(
        [BASTION, "gateway", "--policy", str(tmp_path / "p.yaml"), "--upstreams", str(tmp_path / "u.yaml"),
         "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    what, since, todo = EXPECTED[adapter]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert what in r.stderr and since in r.stderr and todo in r.stderr
    assert not (tmp_path / "state").exists()  # refused before anything was opened
