"""Fine-tuning APIs their providers have deprecated: refused when the gateway's config is loaded.

No adapter is built for them (PROVIDERS.md §0 findings 2 and 4, §7, §10): an upstream with
``adapter: cohere`` or ``adapter: databricks`` (or an upstream of that name without ``adapter``) stops
the gateway at start with what was deprecated, since when, the source, and what to do instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.errors import ConfigError

__all__ = ["DEPRECATED", "Deprecated", "refuse_deprecated"]


@dataclass(frozen=True)
class Deprecated:
    what: str
    since: str
    source: str
    instead: str


DEPRECATED: dict[str, Deprecated] = {
    "cohere": Deprecated(
        what="Cohere fine-tuning",
        since="since September 15, 2025",
        source="docs.cohere.com/docs/chat-fine-tuning: \"Cohere's fine-tuning feature was deprecated on "
        "September 15, 2025\"; the SDK's datasets.create now accepts only the type embed-input",
        instead="fine-tune with a provider this gateway covers (openai, azure_openai, mistral, fireworks) or train "
        "in-house with a Bastion trainer plugin; remove this upstream from the gateway's config",
    ),
    "databricks": Deprecated(
        what="Databricks Mosaic AI Foundation Model Fine-tuning",
        since="end of life (AWS docs), removal scheduled for August 14, 2026 (Azure Databricks docs)",
        source='docs.databricks.com …/foundation-model-training/create-fine-tune-run: "has reached end of life '
        '(EoL) and is no longer supported"; learn.microsoft.com …/create-fine-tune-run: "deprecated and is '
        'scheduled for removal on August 14, 2026"',
        instead="Databricks points to AI Runtime (your own training code on its GPUs), which a gateway cannot "
        "inspect: run that training with a Bastion trainer plugin for signed provenance instead, or fine-tune "
        "with a provider this gateway covers; remove this upstream from the gateway's config",
    ),
}


def refuse_deprecated(adapter: str, *, upstream: str | None = None, source: str = "<config>") -> None:
    """Raise :class:`ConfigError` if ``adapter`` names a deprecated fine-tuning API; otherwise do nothing."""
    dep = DEPRECATED.get(adapter.lower())
    if dep is None:
        return
    where = f"{source}: upstreams.{upstream}.adapter: " if upstream is not None else ""
    raise ConfigError(
        f"{where}adapter {adapter!r} is not supported: {dep.what} is deprecated ({dep.since}; source: "
        f"{dep.source}), so this gateway has no adapter for it and will not start with it",
        hint=dep.instead,
    )
