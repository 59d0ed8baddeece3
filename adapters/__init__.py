"""bastion.adapters: provider specs for the egress gateway (one short module per provider)."""

from __future__ import annotations

from bastion.adapters.deprecated import refuse_deprecated
from bastion.errors import ConfigError
from bastion.gateway.spec import ProviderSpec

__all__ = ["get_provider", "known_providers", "register_provider"]

_REGISTERED: dict[str, ProviderSpec] = {}


def register_provider(spec: ProviderSpec) -> None:
    """Make ``spec`` available to upstreams as ``adapter: <spec.name>`` (tests, site-specific providers)."""
    _REGISTERED[spec.name] = spec


def known_providers() -> list[str]:
    return sorted({*_BUILT_IN, *_REGISTERED})


_BUILT_IN = ("azure_openai", "bedrock", "fireworks", "gcs", "hf_hub", "mistral", "openai", "s3", "together", "vertex")


def get_provider(name: str) -> ProviderSpec:
    """A provider spec by name (see :func:`known_providers`) or a registered one."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name == "openai":
        from bastion.adapters.openai.spec import SPEC

        return SPEC
    if name in ("azure_openai", "azure-openai", "azure"):
        from bastion.adapters.azure_openai.spec import SPEC as AZURE

        return AZURE
    if name == "mistral":
        from bastion.adapters.mistral.spec import SPEC as MISTRAL

        return MISTRAL
    if name in ("s3", "bedrock"):
        from bastion.extras import require

        require("aws", feature=f"the gateway's {name} adapter")
    if name == "s3":
        from bastion.adapters.s3.spec import SPEC as S3

        return S3
    if name == "bedrock":
        from bastion.adapters.bedrock.spec import SPEC as BEDROCK

        return BEDROCK
    if name in ("hf_hub", "hf-hub", "huggingface"):
        from bastion.adapters.hf_hub.spec import SPEC as HF_HUB

        return HF_HUB
    if name == "together":
        from bastion.adapters.together.spec import SPEC as TOGETHER

        return TOGETHER
    if name in ("gcs", "google_cloud_storage", "vertex", "vertex_ai"):
        from bastion.extras import require

        require("google", feature=f"the {name} gateway provider")
    if name in ("gcs", "google_cloud_storage"):
        from bastion.adapters.gcs.spec import SPEC as GCS

        return GCS
    if name in ("vertex", "vertex_ai"):
        from bastion.adapters.vertex.spec import SPEC as VERTEX

        return VERTEX
    if name == "fireworks":
        from bastion.adapters.fireworks.spec import SPEC as FIREWORKS

        return FIREWORKS
    refuse_deprecated(name)
    raise ConfigError(f"unknown provider {name!r}", hint=f"known providers: {', '.join(known_providers())}")
