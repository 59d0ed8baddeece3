"""Bastion: provenance, signing and egress control for regulated LLM fine-tuning."""

from __future__ import annotations

from bastion.errors import (
    BastionError,
    ConfigError,
    GatewayError,
    InputError,
    LedgerError,
    LedgerVerificationError,
    PolicyError,
    SigningError,
    VerificationError,
)

__version__ = "0.1.0"

__all__ = [
    "BastionError",
    "ConfigError",
    "GatewayError",
    "InputError",
    "LedgerError",
    "LedgerVerificationError",
    "PolicyError",
    "SigningError",
    "VerificationError",
    "__version__",
]
