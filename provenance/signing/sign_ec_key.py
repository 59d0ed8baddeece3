"""Backend ``key``: a local EC private key (PEM). Air-gapped; the default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bastion.provenance.signing.bundle import key_bundle, key_fingerprint
from bastion.provenance.signing.keys import load_private_key, password_from_env
from bastion.provenance.signing.signer import Signer

if TYPE_CHECKING:
    from model_signing import signing as ms_signing


class KeySigner(Signer):
    """Signs with a PEM EC key; verifiers need the matching public key (``signing.pub``)."""

    backend = "key"

    def __init__(self, private_key: str | os.PathLike[str], *, password_env: str | None = None) -> None:
        self._path = Path(private_key)
        self._password_env = password_env
        self._key = load_private_key(self._path, password_env=password_env)

    def sign_statement(self, payload: bytes) -> str:
        return key_bundle(self._key, payload)

    def model_signing_config(self) -> ms_signing.Config:
        from model_signing import signing as ms_signing

        password = password_from_env(self._password_env)
        # model_signing passes the password straight to cryptography, which wants bytes.
        config = ms_signing.Config()  # type: ignore[no-untyped-call]
        return config.use_elliptic_key_signer(private_key=self._path, password=cast(Any, password))

    @property
    def identity(self) -> dict[str, Any]:
        return {"type": "key", "fingerprint": key_fingerprint(self._key.public_key())}
