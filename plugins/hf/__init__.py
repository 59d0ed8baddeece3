"""Hugging Face transformers integration: the provenance TrainerCallback.

``BastionCallback`` and ``DatasetInput`` live in :mod:`bastion.plugins.hf.callback`; the tiny local
model/dataset builders in :mod:`bastion.plugins.hf.tiny`. All are imported on first use so that
importing this package does not import transformers or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.extras import import_module, require

if TYPE_CHECKING:
    from bastion.plugins.hf.callback import BastionCallback, DatasetInput
    from bastion.plugins.hf.tiny import build_tiny_model, write_demo_datasets

_LAZY = {
    "BastionCallback": "bastion.plugins.hf.callback",
    "DatasetInput": "bastion.plugins.hf.callback",
    "build_tiny_model": "bastion.plugins.hf.tiny",
    "write_demo_datasets": "bastion.plugins.hf.tiny",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    feature = f"{__name__}.{name}"
    require("hf", feature=feature)  # torch too: the tiny builders import it only when called
    return getattr(import_module(module, feature=feature), name)


__all__ = ["BastionCallback", "DatasetInput", "build_tiny_model", "write_demo_datasets"]
