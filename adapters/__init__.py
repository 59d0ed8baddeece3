"""bastion.adapters: provider specs for the egress gateway (one short module per provider)."""

from __future__ import annotations

from bastion.errors import ConfigError
from bastion.gateway.spec import ProviderSpec

__all__ = ["get_provider", "known_providers"]


def known_providers() -> list[str]:
    return ["azure_openai", "openai"]


def get_provider(name: str) -> ProviderSpec:
    """A provider spec by name (``openai``, ``azure_openai``)."""
    if name == "openai":
        from bastion.adapters.openai.spec import SPEC

        return SPEC
    if name in ("azure_openai", "azure-openai", "azure"):
        from bastion.adapters.azure_openai.spec import SPEC as AZURE

        return AZURE
    raise ConfigError(f"unknown provider {name!r}", hint=f"known providers: {', '.join(known_providers())}")
