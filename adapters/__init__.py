"""bastion.adapters: provider adapters for the egress gateway."""

from __future__ import annotations

from bastion.adapters.base import Adapter, Route, RouteSpec, RouteTable
from bastion.errors import ConfigError

__all__ = ["Adapter", "Route", "RouteSpec", "RouteTable", "get_adapter", "known_adapters"]


def known_adapters() -> list[str]:
    return ["openai"]


def get_adapter(name: str) -> Adapter:
    """A fresh adapter instance by name (``openai``)."""
    if name == "openai":
        from bastion.adapters.openai import OpenAIAdapter

        return OpenAIAdapter()
    raise ConfigError(f"unknown adapter {name!r}", hint=f"known adapters: {', '.join(known_adapters())}")
