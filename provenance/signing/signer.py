"""The one abstraction every signing backend implements."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model_signing import signing as ms_signing


class Signer(abc.ABC):
    """Signs in-toto statements into Sigstore bundles and configures model_signing the same way.

    One backend per module, like model_signing's ``_signing/``: :mod:`.sign_ec_key`,
    :mod:`.sign_certificate`, :mod:`.sign_sigstore`.
    """

    backend: str

    @abc.abstractmethod
    def sign_statement(self, payload: bytes) -> str:
        """Sign ``payload`` (the exact bytes of an in-toto Statement v1) and return bundle JSON."""

    @abc.abstractmethod
    def model_signing_config(self) -> ms_signing.Config:
        """A model_signing signing config using the same key/certificate/identity."""

    @property
    @abc.abstractmethod
    def identity(self) -> dict[str, Any]:
        """Who signs, in the form verification reports and deploy policies use."""
