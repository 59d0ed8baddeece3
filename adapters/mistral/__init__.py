"""Mistral AI (``api.mistral.ai``, EU) on the gateway core: see :mod:`bastion.adapters.mistral.spec`."""
