"""Backend ``sigstore``: keyless signing with an OIDC identity (Fulcio certificate + Rekor entry).

The public Sigstore instance is used by default (its trust root is fetched via TUF, so signing and
verifying need network access to sigstore.dev). A private deployment is selected with a Sigstore
ClientTrustConfig JSON file, the same file ``sigstore`` and ``model_signing --trust_config`` take::

    {
      "mediaType": "application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
      "trustedRoot": { ...your instance's trusted_root.json: Fulcio CA chain, Rekor and CT log keys, TSAs... },
      "signingConfig": {
        "mediaType": "application/vnd.dev.sigstore.signingconfig.v0.2+json",
        "caUrls":        [{"url": "https://fulcio.sigstore.acme.internal", "majorApiVersion": 1,
                           "validFor": {"start": "2025-01-01T00:00:00Z"}, "operator": "acme"}],
        "oidcUrls":      [{"url": "https://idp.acme.internal", ...}],
        "rekorTlogUrls": [{"url": "https://rekor.sigstore.acme.internal", ...}],
        "tsaUrls":       [],
        "rekorTlogConfig": {"selector": "ANY"}, "tsaConfig": {"selector": "ANY"}
      }
    }

Sign (plugin config ``{backend: sigstore, trust_config: acme-sigstore.json, identity_token_env: CI_OIDC_TOKEN}``
or ``bastion sign OUT --sigstore --trust-config acme-sigstore.json --identity-token-env CI_OIDC_TOKEN``),
then verify with ``bastion verify OUT --trust-config acme-sigstore.json --identity ci@acme.example --issuer
https://idp.acme.internal`` or the stock ``model_signing verify sigstore OUT --signature OUT/bastion/model.sig
--trust_config acme-sigstore.json --identity ... --identity_provider ...``. Token precedence: the variable named
by ``identity_token_env``, then ambient CI credentials (GitHub Actions, GitLab, cloud workload identity), then
an interactive browser flow (avoid in training jobs).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.errors import ConfigError, SigningError
from bastion.provenance.signing.signer import Signer

DEFAULT_CLIENT_ID = "sigstore"

if TYPE_CHECKING:
    from model_signing import signing as ms_signing


def load_trust_config(path: Path, *, what: str = "trust_config") -> Any:
    """Parse a Sigstore ClientTrustConfig JSON file (offline)."""
    from sigstore.models import ClientTrustConfig

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what}: {path} not found") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        return ClientTrustConfig.from_json(text)
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"{what}: {path} is not a Sigstore ClientTrustConfig ({first})",
            hint="expected JSON with mediaType application/vnd.dev.sigstore.clienttrustconfig.v0.1+json",
        ) from None


def describe_error(exc: BaseException) -> str:
    """One line about a sigstore/network failure (sigstore often raises bare exceptions with the cause chained)."""
    seen: BaseException | None = exc
    while seen is not None:
        text = str(seen).strip()
        if text:
            line = text.splitlines()[0]
            return f"{type(exc).__name__}: {line[:300]}"
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


class SigstoreSigner(Signer):
    """Signs with a short-lived Fulcio certificate bound to an OIDC identity; logs to Rekor."""

    backend = "sigstore"

    def __init__(
        self,
        *,
        trust_config: Path | None = None,
        staging: bool = False,
        identity_token_env: str | None = None,
        oidc_issuer: str | None = None,
        client_id: str | None = None,
        use_ambient_credentials: bool = True,
    ) -> None:
        self._trust_config_path = trust_config
        self._staging = staging
        self._token_env = identity_token_env
        self._oidc_issuer = oidc_issuer
        self._client_id = client_id or DEFAULT_CLIENT_ID
        self._ambient = use_ambient_credentials
        self._token: Any = None
        # A private instance's trust config is read now so a bad file fails before training starts.
        self._trust_config: Any = load_trust_config(trust_config) if trust_config is not None else None
        if identity_token_env is not None and not os.environ.get(identity_token_env):
            raise ConfigError(f"identity_token_env: environment variable {identity_token_env} is not set or empty")

    def trust_config(self) -> Any:
        """The ClientTrustConfig to sign against (public production/staging ones are fetched via TUF)."""
        if self._trust_config is None:
            from sigstore.models import ClientTrustConfig

            try:
                self._trust_config = ClientTrustConfig.staging() if self._staging else ClientTrustConfig.production()
            except Exception as exc:
                raise SigningError(
                    f"cannot fetch the public Sigstore trust root via TUF ({type(exc).__name__})",
                    hint="offline? use backend 'key' or 'certificate', or a private instance via trust_config",
                ) from None
        return self._trust_config

    def signing_urls(self) -> dict[str, Any]:
        """Where signing will go (Fulcio, Rekor, OIDC), for reports and diagnostics."""
        sc = self.trust_config().signing_config
        return {
            "fulcio": sc.get_fulcio().url,
            "rekor": [t.url for t in sc.get_tlogs()] if hasattr(sc, "get_tlogs") else [],
            "oidc": sc.get_oidc_url(),
        }

    def identity_token(self) -> Any:
        """An OIDC identity token: explicit (env var), then ambient (CI), then interactive browser flow."""
        if self._token is not None:
            return self._token
        from sigstore import oidc

        try:
            if self._token_env is not None:
                raw = os.environ.get(self._token_env, "")
                self._token = oidc.IdentityToken(raw, self._client_id)
                return self._token
            if self._ambient:
                detected = oidc.detect_credential(self._client_id)
                if detected:
                    self._token = oidc.IdentityToken(detected, self._client_id)
                    return self._token
            issuer = oidc.Issuer(self._oidc_issuer or self.trust_config().signing_config.get_oidc_url())
            self._token = issuer.identity_token(client_id=self._client_id)
        except (oidc.IdentityError, oidc.IssuerError, oidc.ExpiredIdentity) as exc:
            raise SigningError(f"cannot obtain an OIDC identity token: {exc}") from None
        return self._token

    def sign_statement(self, payload: bytes) -> str:
        from sigstore import dsse
        from sigstore.sign import SigningContext

        try:
            statement = dsse.Statement(payload)
        except Exception as exc:
            raise SigningError(f"the statement is not a valid in-toto statement for Sigstore: {exc}") from None
        context = SigningContext.from_trust_config(self.trust_config())
        token = self.identity_token()
        try:
            with context.signer(token) as signer:
                bundle = signer.sign_dsse(statement)
        except SigningError:
            raise
        except Exception as exc:
            urls = ""
            with contextlib.suppress(Exception):
                urls = f" (Fulcio {self.signing_urls()['fulcio']})"
            raise SigningError(f"Sigstore signing failed{urls}: {describe_error(exc)}") from None
        return str(bundle.to_json())

    def model_signing_config(self) -> ms_signing.Config:
        from model_signing import signing as ms_signing

        token = self.identity_token()
        config = ms_signing.Config()  # type: ignore[no-untyped-call]
        return config.use_sigstore_signer(
            identity_token=str(token),  # IdentityToken.__str__ is the raw JWT
            client_id=self._client_id,
            use_staging=self._staging,
            trust_config=self._trust_config_path,
            use_ambient_credentials=False,
        )

    @property
    def identity(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "sigstore"}
        if self._token is not None:
            out["identity"] = self._token.identity
            out["issuer"] = self._token.issuer
        return out
