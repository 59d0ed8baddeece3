"""Bastion's own settings for a LLaMA-Factory run, and how they are kept out of LLaMA-Factory's way.

LLaMA-Factory rejects keys it does not know (``HfArgumentParser`` raises on them), so Bastion's
settings live under one ``bastion:`` key of the same YAML file and are removed before LLaMA-Factory
sees the config::

    bastion:
      strict: true              # any provenance problem stops the run before the first step
      signing:                  # bastion.provenance.signing.SigningConfig; omit for an unsigned record
        backend: key
        private_key: keys/signing.pem
      sign_checkpoints: false
      fsync: interval           # always | interval | never (ledger durability)
      near_duplicates:          # optional: near-duplicate train/eval overlap (MinHash/LSH), needs [neardup]
        threshold: 0.8

``llamafactory-cli`` style overrides reach them too: ``bastion.strict=true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from bastion.errors import ConfigError

SETTINGS_KEY = "bastion"
FSYNC_MODES: tuple[str, ...] = ("always", "interval", "never")
_KEYS = ("strict", "signing", "sign_checkpoints", "fsync", "near_duplicates")


@dataclass(frozen=True)
class BastionSettings:
    """What Bastion does during a LLaMA-Factory run. ``source`` names where the settings came from."""

    strict: bool = False
    signing: Mapping[str, Any] | None = None
    sign_checkpoints: bool = False
    fsync: Literal["always", "interval", "never"] = "interval"
    near_duplicates: Mapping[str, Any] | None = None
    source: str = "defaults"

    @classmethod
    def from_mapping(cls, value: Any, *, source: str) -> BastionSettings:
        """Validate the ``bastion:`` section; errors name the key and where it came from."""
        if value is None:
            return cls(source=source)
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"{source}: '{SETTINGS_KEY}' must be a mapping, got {type(value).__name__}",
                hint=f"e.g.\n{SETTINGS_KEY}:\n  strict: true",
            )
        unknown = sorted(str(k) for k in value if k not in _KEYS)
        if unknown:
            raise ConfigError(
                f"{source}: unknown key {SETTINGS_KEY}.{unknown[0]}",
                hint=f"allowed keys under '{SETTINGS_KEY}': {', '.join(_KEYS)}",
            )
        out = cls(source=source)
        for key in ("strict", "sign_checkpoints"):
            if key in value and not isinstance(value[key], bool):
                raise ConfigError(f"{source}: {SETTINGS_KEY}.{key} must be true or false, got {value[key]!r}")
        out = replace(out, strict=value.get("strict", False), sign_checkpoints=value.get("sign_checkpoints", False))
        if "fsync" in value:
            mode = value["fsync"]
            if mode not in FSYNC_MODES:
                raise ConfigError(
                    f"{source}: {SETTINGS_KEY}.fsync must be one of {', '.join(FSYNC_MODES)}, got {mode!r}"
                )
            out = replace(out, fsync=mode)
        signing = value.get("signing")
        if signing is not None and not isinstance(signing, Mapping):
            raise ConfigError(
                f"{source}: {SETTINGS_KEY}.signing must be a mapping, got {type(signing).__name__}",
                hint="e.g. signing: {backend: key, private_key: keys/signing.pem}",
            )
        near = value.get("near_duplicates")
        if near is not None:
            from bastion.provenance.neardup import NearDupConfig

            NearDupConfig.from_mapping(near, source=f"{source}: {SETTINGS_KEY}.near_duplicates")
        out = replace(out, near_duplicates=None if near is None else dict(near))
        return replace(out, signing=None if signing is None else dict(signing))

    def override(
        self,
        *,
        strict: bool | None = None,
        signing: Mapping[str, Any] | None = None,
        sign_checkpoints: bool | None = None,
        fsync: str | None = None,
        source: str | None = None,
    ) -> BastionSettings:
        """These settings with every non-``None`` argument taking precedence (command-line flags)."""
        out = self
        if strict is not None:
            out = replace(out, strict=strict)
        if signing is not None:
            out = replace(out, signing=dict(signing))
        if sign_checkpoints is not None:
            out = replace(out, sign_checkpoints=sign_checkpoints)
        if fsync is not None:
            if fsync not in FSYNC_MODES:
                raise ConfigError(f"fsync must be one of {', '.join(FSYNC_MODES)}, got {fsync!r}")
            out = replace(out, fsync=fsync)  # type: ignore[arg-type]
        if source is not None and out != self:
            out = replace(out, source=f"{self.source} + {source}")
        return out


def split_settings(args: Mapping[str, Any], *, source: str) -> tuple[dict[str, Any], BastionSettings]:
    """Split a LLaMA-Factory config into (config without ``bastion:``, Bastion settings)."""
    clean = {str(k): v for k, v in args.items() if k != SETTINGS_KEY}
    return clean, BastionSettings.from_mapping(args.get(SETTINGS_KEY), source=source)


__all__ = ["FSYNC_MODES", "SETTINGS_KEY", "BastionSettings", "split_settings"]
