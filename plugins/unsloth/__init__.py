"""Unsloth integration: ``track(model, tokenizer, ...)`` records the base model and signs every save.

``track`` and ``UnslothCallback`` live in :mod:`bastion.plugins.unsloth.tracking`; base-model resolution
(local directory or Hugging Face cache, offline) is the core's :mod:`bastion.provenance.models`, re-exported
by :mod:`bastion.plugins.unsloth.base_model`. Imported on first use, so importing this package imports
neither transformers nor torch (nor Unsloth, ever).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.extras import import_module

if TYPE_CHECKING:
    from bastion.plugins.unsloth.base_model import BaseModelSource, resolve_base_model
    from bastion.plugins.unsloth.tracking import ExportRecord, UnslothCallback, track, untrack

_LAZY = {
    "track": "bastion.plugins.unsloth.tracking",
    "untrack": "bastion.plugins.unsloth.tracking",
    "UnslothCallback": "bastion.plugins.unsloth.tracking",
    "ExportRecord": "bastion.plugins.unsloth.tracking",
    "BaseModelSource": "bastion.plugins.unsloth.base_model",
    "resolve_base_model": "bastion.plugins.unsloth.base_model",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, feature=f"{__name__}.{name}"), name)


__all__ = ["BaseModelSource", "ExportRecord", "UnslothCallback", "resolve_base_model", "track", "untrack"]
