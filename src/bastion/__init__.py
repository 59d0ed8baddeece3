"""Bastion: provenance, signing and egress control for regulated LLM fine-tuning."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.errors import (
    BastionError,
    ConfigError,
    GatewayError,
    InputError,
    LedgerError,
    LedgerVerificationError,
    MissingExtraError,
    PolicyError,
    SigningError,
    VerificationError,
)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from bastion.provenance.verify import verify


def __getattr__(name: str) -> Any:
    """``bastion.verify`` is imported on first use, so ``import bastion`` stays light."""
    if name == "verify":
        from bastion.provenance.verify import verify

        return verify
    raise AttributeError(f"module 'bastion' has no attribute {name!r}")


__all__ = [
    "BastionError",
    "ConfigError",
    "GatewayError",
    "InputError",
    "LedgerError",
    "LedgerVerificationError",
    "MissingExtraError",
    "PolicyError",
    "SigningError",
    "VerificationError",
    "__version__",
    "verify",
]
