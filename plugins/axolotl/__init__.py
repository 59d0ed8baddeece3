"""Axolotl integration: a plugin for Axolotl's own plugin system.

Add to the Axolotl YAML config::

    plugins:
      - bastion.plugins.axolotl.BastionPlugin

Optional keys (validated by Axolotl together with the rest of the config): ``bastion_strict``,
``bastion_signing``, ``bastion_sign_checkpoints``, ``bastion_fsync``, ``bastion_record_merge``; see
:class:`bastion.plugins.axolotl.args.BastionArgs`. Importing this package does not import Axolotl;
``BastionPlugin`` is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.extras import import_module

if TYPE_CHECKING:
    from bastion.plugins.axolotl.args import BastionArgs
    from bastion.plugins.axolotl.plugin import BastionPlugin

_LAZY = {
    "BastionPlugin": "bastion.plugins.axolotl.plugin",
    "BastionArgs": "bastion.plugins.axolotl.args",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, feature=f"{__name__}.{name}"), name)


__all__ = ["BastionArgs", "BastionPlugin"]
