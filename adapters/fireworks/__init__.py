"""Fireworks AI (``api.fireworks.ai``, US) on the gateway core: see :mod:`bastion.adapters.fireworks.spec`."""
