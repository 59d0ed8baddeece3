"""The ``bastion_*`` keys of an Axolotl config, declared so that Axolotl's own validation checks them.

Axolotl merges every plugin's input-args model into its config schema (``get_input_args``), so these
keys are validated together with the rest of the YAML file, before any model or dataset is loaded.
Axolotl ignores unknown keys; a misspelt ``bastion_*`` key would then silently switch a setting off,
so unknown keys with the ``bastion_`` prefix are rejected here with the closest valid name.

This module imports neither Axolotl nor torch.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from bastion.errors import ConfigError

PREFIX = "bastion_"


class BastionArgs(BaseModel):
    """Bastion's settings in an Axolotl config (all optional)."""

    bastion_strict: bool = Field(
        default=False,
        json_schema_extra={
            "description": "Stop before the first training step when an input cannot be recorded "
            "(missing file, hub id instead of a local path, unreadable dataset)."
        },
    )
    bastion_signing: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra={
            "description": "How to sign the run record, e.g. {backend: key, private_key: keys/signing.pem}. "
            "Backends: key, certificate, sigstore. Unset: the record is written but not signed."
        },
    )
    bastion_sign_checkpoints: bool = Field(
        default=False,
        json_schema_extra={"description": "Also sign every saved checkpoint-N directory (needs bastion_signing)."},
    )
    bastion_fsync: Literal["always", "interval", "never"] = Field(
        default="interval",
        json_schema_extra={"description": "How often the ledger is flushed to disk."},
    )
    bastion_near_duplicates: dict[str, Any] | None = Field(
        default=None,
        json_schema_extra={
            "description": "Also count eval records with a near-duplicate in the training data (MinHash/LSH over "
            "normalised text), e.g. {threshold: 0.8}; keys threshold, num_perm, shingle_words. Needs "
            "bastion-provenance[neardup]."
        },
    )
    bastion_record_merge: bool = Field(
        default=True,
        json_schema_extra={
            "description": "After `axolotl merge-lora`, record the merged model in the run's ledger, "
            "update the statement and re-sign."
        },
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_bastion_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        known = [name for name in BastionArgs.model_fields if name.startswith(PREFIX)]
        unknown = sorted(k for k in data if isinstance(k, str) and k.startswith(PREFIX) and k not in known)
        if unknown:
            parts = []
            for key in unknown:
                close = difflib.get_close_matches(key, known, n=1)
                parts.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"bastion: unknown config key {', '.join(parts)}; valid bastion keys: {', '.join(known)}")
        return data

    @field_validator("bastion_signing", mode="before")
    @classmethod
    def _check_signing(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError(
                "bastion_signing must be a mapping such as {backend: key, private_key: keys/signing.pem}, "
                f"got {type(value).__name__}"
            )
        check_signing(value)
        return value

    @field_validator("bastion_near_duplicates", mode="before")
    @classmethod
    def _check_near_duplicates(cls, value: Any) -> Any:
        if value is None:
            return None
        from bastion.provenance.neardup import NearDupConfig

        try:
            NearDupConfig.from_mapping(value, source="bastion_near_duplicates")
        except ConfigError as exc:
            raise ValueError(exc.message) from None
        return value

    @model_validator(mode="after")
    def _checkpoints_need_signing(self) -> BastionArgs:
        if self.bastion_sign_checkpoints and self.bastion_signing is None:
            raise ValueError("bastion_sign_checkpoints: true needs bastion_signing (how to sign)")
        return self


def check_signing(mapping: dict[str, Any]) -> Any:
    """Validate ``bastion_signing`` with the signing module; ``ValueError`` (for pydantic) naming the key.

    Key and certificate files must exist now: a missing key found only after hours of training
    would leave the run unsigned.
    """
    from bastion.provenance.signing import SigningConfig

    try:
        cfg = SigningConfig.from_mapping(mapping, source="bastion_signing")
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    for name in ("private_key", "certificate", "trust_config"):
        path = getattr(cfg, name, None)
        if path is not None and not Path(path).is_file():
            raise ValueError(
                f"bastion_signing.{name}: file not found: {path} (relative paths are read from {os.getcwd()})"
            )
    for i, path in enumerate(getattr(cfg, "certificate_chain", ()) or ()):
        if not Path(path).is_file():
            raise ValueError(f"bastion_signing.certificate_chain[{i}]: file not found: {path}")
    return cfg


__all__ = ["PREFIX", "BastionArgs", "check_signing"]
