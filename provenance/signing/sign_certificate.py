"""Backend ``certificate``: a private key plus a certificate chain from the organisation's own CA."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.errors import ConfigError
from bastion.provenance.signing.bundle import certificate_bundle
from bastion.provenance.signing.keys import load_certificates, load_private_key
from bastion.provenance.signing.signer import Signer

if TYPE_CHECKING:
    from model_signing import signing as ms_signing


def certificate_identity(cert: x509.Certificate) -> dict[str, Any]:
    """Subject, SANs, issuer and fingerprint of a signing certificate (for reports and policies)."""
    sans: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [str(v) for v in ext.get_values_for_type(x509.RFC822Name)]
        sans += [str(v) for v in ext.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [str(v) for v in ext.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return {
        "type": "certificate",
        "subject": cert.subject.rfc4514_string(),
        "common_name": str(cns[0].value) if cns else None,
        "san": sans,
        "issuer": cert.issuer.rfc4514_string(),
        "fingerprint": "sha256:" + cert.fingerprint(hashes.SHA256()).hex(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def can_sign_code(cert: x509.Certificate) -> bool:
    """The leaf must allow code signing (EKU) or at least digital signatures (KeyUsage), as model_signing checks."""
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        return ExtendedKeyUsageOID.CODE_SIGNING in eku
    except x509.ExtensionNotFound:
        pass
    try:
        return bool(cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature)
    except x509.ExtensionNotFound:
        return False


class CertificateSigner(Signer):
    """Signs with a key whose certificate chains to the organisation's CA; the chain goes in the bundle."""

    backend = "certificate"

    def __init__(
        self,
        private_key: str | os.PathLike[str],
        certificate: str | os.PathLike[str],
        certificate_chain: tuple[Path, ...] | list[Path] = (),
        *,
        password_env: str | None = None,
    ) -> None:
        self._key_path = Path(private_key)
        self._cert_path = Path(certificate)
        self._chain_paths = tuple(Path(p) for p in certificate_chain)
        self._password_env = password_env
        self._key = load_private_key(self._key_path, password_env=password_env)
        leaf = load_certificates([self._cert_path], what="signing certificate")
        self._leaf = leaf[0]
        self._chain = load_certificates(list(self._chain_paths), what="certificate chain") if self._chain_paths else []
        if self._leaf.public_key() != self._key.public_key():
            raise ConfigError(
                f"certificate: {self._cert_path} was not issued for the key in {self._key_path}",
                hint="pass the certificate that belongs to this private key",
            )
        if not can_sign_code(self._leaf):
            raise ConfigError(
                f"certificate: {self._cert_path} is not valid for code signing "
                "(needs ExtendedKeyUsage codeSigning, or KeyUsage digitalSignature without an EKU)"
            )

    def sign_statement(self, payload: bytes) -> str:
        return certificate_bundle(self._key, [self._leaf, *self._chain], payload)

    def model_signing_config(self) -> ms_signing.Config:
        from model_signing import signing as ms_signing

        if self._password_env:
            raise ConfigError(
                "password_env: model_signing 1.1.1's certificate signer cannot open password-protected keys, "
                "so the OpenSSF model signature cannot be written",
                hint="set model_signature: false to write only the provenance bundle, or use an unencrypted key "
                "protected by file permissions / an HSM",
            )
        config = ms_signing.Config()  # type: ignore[no-untyped-call]
        return config.use_certificate_signer(
            private_key=self._key_path,
            signing_certificate=self._cert_path,
            # model_signing 1.1.1 cannot parse an empty chain; repeating the leaf is harmless to verifiers.
            certificate_chain=self._chain_paths or (self._cert_path,),
        )

    @property
    def identity(self) -> dict[str, Any]:
        return certificate_identity(self._leaf)
