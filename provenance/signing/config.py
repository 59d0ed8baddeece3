"""Signing configuration, as trainer plugins read it from their config files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bastion.errors import ConfigError

if TYPE_CHECKING:
    from bastion.provenance.signing.signer import Signer
    from bastion.provenance.signing.timestamp import Timestamper

Backend = Literal["key", "certificate", "sigstore"]
BACKENDS: tuple[str, ...] = ("key", "certificate", "sigstore")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend
    private_key: str | None = None
    password_env: str | None = None
    certificate: str | None = None
    certificate_chain: list[str] = Field(default_factory=list)
    trust_config: str | None = None
    staging: bool = False
    identity_token_env: str | None = None
    oidc_issuer: str | None = None
    client_id: str | None = None
    use_ambient_credentials: bool = True
    model_signature: bool = True
    tsa_url: str | None = None
    tsa_certificate_chain: list[str] = Field(default_factory=list)
    tsa_timeout: float = Field(default=10.0, gt=0, le=300)

    @field_validator("private_key", "certificate", "trust_config", "password_env", "identity_token_env", "tsa_url")
    @classmethod
    def _not_empty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    @field_validator("tsa_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.strip().lower().startswith(("http://", "https://")):
            raise ValueError("must be the http(s):// URL of the TSA's RFC 3161 endpoint")
        return v.strip() if v is not None else None

    @field_validator("certificate_chain", "tsa_certificate_chain", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


@dataclass(frozen=True)
class SigningConfig:
    """How to sign a run. Build it with :meth:`from_mapping` (plugins) or directly (Python API).

    Backends:

    - ``key``: ``private_key`` (PEM EC key, P-256 by default from ``bastion keygen``), optional
      ``password_env`` = NAME of the environment variable holding its password. Works air-gapped.
    - ``certificate``: ``private_key`` + ``certificate`` (leaf, code-signing) + ``certificate_chain``
      (intermediates, optionally the root) issued by the organisation's own CA.
    - ``sigstore``: keyless OIDC signing (Fulcio + Rekor). ``trust_config`` points at a
      ClientTrustConfig JSON for a private Sigstore deployment (default: the public instance);
      ``identity_token_env`` names an environment variable holding an OIDC token (CI), otherwise
      ambient credentials are detected, then an interactive browser flow starts.

    ``model_signature`` (default on) also writes the stock OpenSSF model_signing signature of the
    directory to ``bastion/model.sig``.

    RFC 3161 timestamps (backends ``key`` and ``certificate``): ``tsa_url`` is the organisation's
    time-stamping authority, ``tsa_certificate_chain`` its root CA (and intermediates), PEM, against
    which each reply is checked before it is stored in the bundle; ``tsa_timeout`` in seconds
    (default 10). A timestamped certificate-signed run still verifies after the certificate expires
    (see :mod:`bastion.provenance.signing.timestamp`). Keyless Sigstore bundles carry Rekor's times.
    """

    backend: Backend
    private_key: Path | None = None
    password_env: str | None = None
    certificate: Path | None = None
    certificate_chain: tuple[Path, ...] = ()
    trust_config: Path | None = None
    staging: bool = False
    identity_token_env: str | None = None
    oidc_issuer: str | None = None
    client_id: str | None = None
    use_ambient_credentials: bool = True
    model_signature: bool = True
    tsa_url: str | None = None
    tsa_certificate_chain: tuple[Path, ...] = ()
    tsa_timeout: float = 10.0
    source: str = field(default="signing config", compare=False)

    @classmethod
    def from_mapping(
        cls,
        mapping: Mapping[str, Any],
        *,
        source: str = "signing config",
        base_dir: str | os.PathLike[str] | None = None,
    ) -> SigningConfig:
        """Validate a plain mapping (from YAML/JSON); relative paths resolve against ``base_dir`` (cwd)."""
        if isinstance(mapping, SigningConfig):
            return mapping
        if not isinstance(mapping, Mapping):
            raise ConfigError(f"{source}: must be a mapping with at least 'backend', got {type(mapping).__name__}")
        try:
            m = _Model.model_validate(dict(mapping))
        except ValidationError as exc:
            lines = []
            for err in exc.errors():
                key = ".".join(str(p) for p in err["loc"]) or "(top level)"
                msg = err["msg"].removeprefix("Value error, ")
                if err["type"] == "extra_forbidden":
                    msg = "unknown key (allowed: " + ", ".join(_Model.model_fields) + ")"
                elif key == "backend":
                    msg = f"{msg}; choose one of {', '.join(BACKENDS)}"
                lines.append(f"{source}: {key}: {msg}")
            raise ConfigError("\n".join(lines)) from None
        base = Path(base_dir) if base_dir is not None else Path.cwd()

        def path(v: str | None) -> Path | None:
            if v is None:
                return None
            p = Path(os.path.expanduser(v))
            return p if p.is_absolute() else base / p

        cfg = cls(
            backend=m.backend,
            private_key=path(m.private_key),
            password_env=m.password_env,
            certificate=path(m.certificate),
            certificate_chain=tuple(p for p in (path(c) for c in m.certificate_chain) if p is not None),
            trust_config=path(m.trust_config),
            staging=m.staging,
            identity_token_env=m.identity_token_env,
            oidc_issuer=m.oidc_issuer,
            client_id=m.client_id,
            use_ambient_credentials=m.use_ambient_credentials,
            model_signature=m.model_signature,
            tsa_url=m.tsa_url,
            tsa_certificate_chain=tuple(p for p in (path(c) for c in m.tsa_certificate_chain) if p is not None),
            tsa_timeout=m.tsa_timeout,
            source=source,
        )
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise :class:`ConfigError` naming the key when a backend's required settings are missing."""
        s = self.source
        if self.backend not in BACKENDS:
            raise ConfigError(f"{s}: backend: unknown backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")
        if self.backend in ("key", "certificate") and self.private_key is None:
            raise ConfigError(
                f"{s}: private_key: required for backend '{self.backend}'",
                hint="create one with `bastion keygen --out keys/`" if self.backend == "key" else None,
            )
        if self.backend == "certificate" and self.certificate is None:
            raise ConfigError(f"{s}: certificate: required for backend 'certificate' (the PEM signing certificate)")
        if self.backend != "certificate" and self.certificate_chain:
            raise ConfigError(f"{s}: certificate_chain: only used by backend 'certificate'")
        if self.backend != "sigstore":
            for name in ("trust_config", "identity_token_env", "oidc_issuer", "client_id"):
                if getattr(self, name):
                    raise ConfigError(f"{s}: {name}: only used by backend 'sigstore'")
        if self.backend == "sigstore":
            for name in ("private_key", "password_env", "certificate"):
                if getattr(self, name):
                    raise ConfigError(f"{s}: {name}: not used by backend 'sigstore' (keyless signing)")
            if self.staging and self.trust_config:
                raise ConfigError(f"{s}: staging and trust_config are exclusive")
            if self.tsa_url or self.tsa_certificate_chain:
                raise ConfigError(
                    f"{s}: tsa_url: not used by backend 'sigstore' (keyless bundles carry the log's signed time)"
                )
        if self.tsa_url and not self.tsa_certificate_chain:
            raise ConfigError(
                f"{s}: tsa_certificate_chain: required with tsa_url (the TSA's root CA, PEM), "
                "so that each timestamp is checked before it is stored"
            )
        if self.tsa_certificate_chain and not self.tsa_url:
            raise ConfigError(f"{s}: tsa_url: required with tsa_certificate_chain (the TSA's RFC 3161 endpoint)")

    def timestamper(self) -> Timestamper | None:
        """The RFC 3161 client for ``tsa_url`` (loads the TSA chain), or ``None`` when not configured."""
        self.check()
        if self.tsa_url is None:
            return None
        from bastion.provenance.signing.timestamp import Timestamper, TsaTrust

        trust = TsaTrust.load(list(self.tsa_certificate_chain), what=f"{self.source}: tsa_certificate_chain")
        return Timestamper(url=self.tsa_url, trust=trust, timeout=self.tsa_timeout)

    def signer(self) -> Signer:
        """Build the backend (loads keys / trust configuration; no network access yet)."""
        self.check()
        if self.backend == "key":
            from bastion.provenance.signing.sign_ec_key import KeySigner

            assert self.private_key is not None
            return KeySigner(self.private_key, password_env=self.password_env)
        if self.backend == "certificate":
            from bastion.provenance.signing.sign_certificate import CertificateSigner

            assert self.private_key is not None and self.certificate is not None
            return CertificateSigner(
                self.private_key, self.certificate, self.certificate_chain, password_env=self.password_env
            )
        from bastion.provenance.signing.sign_sigstore import SigstoreSigner

        return SigstoreSigner(
            trust_config=self.trust_config,
            staging=self.staging,
            identity_token_env=self.identity_token_env,
            oidc_issuer=self.oidc_issuer,
            client_id=self.client_id,
            use_ambient_credentials=self.use_ambient_credentials,
        )
