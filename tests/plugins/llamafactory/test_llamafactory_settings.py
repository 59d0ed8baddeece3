"""The ``bastion:`` settings of a LLaMA-Factory config (no LLaMA-Factory needed)."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError


def test_near_duplicates_setting_is_validated_and_kept() -> None:
    from bastion.plugins.llamafactory.settings import BastionSettings

    settings = BastionSettings.from_mapping({"near_duplicates": {"threshold": 0.75}}, source="sft.yaml")
    assert settings.near_duplicates == {"threshold": 0.75}
    with pytest.raises(ConfigError, match=r"sft\.yaml: bastion\.near_duplicates\.shingle_words"):
        BastionSettings.from_mapping({"near_duplicates": {"shingle_words": 0}}, source="sft.yaml")
