"""LLaMA-Factory integration: a provenance record for ``llamafactory-cli train`` runs.

Command line (same arguments as ``llamafactory-cli train``, ``key=value`` overrides included)::

    bastion llamafactory train sft.yaml

Python::

    from bastion.plugins.llamafactory import run_exp
    run_exp("sft.yaml")          # or a dict / argument list, as llamafactory.train.tuner.run_exp takes

Settings go under a ``bastion:`` key of the same YAML (see :mod:`bastion.plugins.llamafactory.settings`);
it is removed before LLaMA-Factory parses the config. Names are imported on first use, so importing
this package does not import LLaMA-Factory, transformers or torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.extras import import_module, require

if TYPE_CHECKING:
    from bastion.plugins.llamafactory.resolve import LlamaFactoryRun, ResolvedDataset, read_config, resolve
    from bastion.plugins.llamafactory.runner import PreparedRun, callbacks_for, prepare, run_exp
    from bastion.plugins.llamafactory.settings import BastionSettings

_LAZY = {
    "BastionSettings": "bastion.plugins.llamafactory.settings",
    "LlamaFactoryRun": "bastion.plugins.llamafactory.resolve",
    "ResolvedDataset": "bastion.plugins.llamafactory.resolve",
    "read_config": "bastion.plugins.llamafactory.resolve",
    "resolve": "bastion.plugins.llamafactory.resolve",
    "PreparedRun": "bastion.plugins.llamafactory.runner",
    "callbacks_for": "bastion.plugins.llamafactory.runner",
    "prepare": "bastion.plugins.llamafactory.runner",
    "run_exp": "bastion.plugins.llamafactory.runner",
}


_NEED_LLAMAFACTORY = {"callbacks_for", "prepare", "resolve", "run_exp"}
"""Names that import LLaMA-Factory only when called: checked when they are imported instead."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    feature = f"{__name__}.{name}"
    if name in _NEED_LLAMAFACTORY:
        require("llamafactory", feature=feature)
    return getattr(import_module(module, feature=feature), name)


__all__ = [
    "BastionSettings",
    "LlamaFactoryRun",
    "PreparedRun",
    "ResolvedDataset",
    "callbacks_for",
    "prepare",
    "read_config",
    "resolve",
    "run_exp",
]
