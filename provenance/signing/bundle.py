"""Sigstore bundles around a DSSE envelope, for key- and certificate-signed (offline) signatures.

sigstore-python's :class:`sigstore.models.Bundle` insists on a Fulcio certificate and a Rekor entry,
so a bundle signed with an organisation's own key or CA is built here from the protobuf-spec models
(``sigstore_models``) exactly the way model_signing's ``_signing/sign_ec_key.py`` and
``sign_certificate.py`` build theirs: media type v0.3, verification material holding either a
public-key hint (SHA-256 of the PEM SubjectPublicKeyInfo) or the X.509 chain, no tlog entries.
Stock ``model_signing verify key|certificate`` accepts these bundles.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sigstore_models.bundle import v1 as bundle_v1
from sigstore_models.common import v1 as common_v1
from sigstore_models.intoto import Envelope, Signature

from bastion.errors import VerificationError

MediaType = Literal["application/vnd.dev.sigstore.bundle.v0.3+json"]
BUNDLE_MEDIA_TYPE: MediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding (the bytes that are actually signed).

    See https://github.com/secure-systems-lab/dsse/blob/v1.0.0/protocol.md.
    """
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def ec_hash(key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) -> hashes.HashAlgorithm:
    """The digest paired with a curve, as model_signing and the Sigstore specs do (P-256 -> SHA-256...)."""
    size = key.curve.key_size
    if size == 256:
        return hashes.SHA256()
    if size == 384:
        return hashes.SHA384()
    if size == 521:
        return hashes.SHA512()
    raise ValueError(f"unsupported curve {key.curve.name}")


def key_hint(public_key: ec.EllipticCurvePublicKey) -> str:
    """model_signing's public-key identifier: hex SHA-256 of the PEM SubjectPublicKeyInfo."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(pem).hexdigest()


def key_fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """``sha256:<hex>`` over the DER SubjectPublicKeyInfo: the identity of a key signer in policies."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign_envelope(private_key: ec.EllipticCurvePrivateKey, payload: bytes) -> Envelope:
    """A DSSE envelope over ``payload`` (an in-toto statement) with one ECDSA signature."""
    signature = private_key.sign(pae(IN_TOTO_PAYLOAD_TYPE, payload), ec.ECDSA(ec_hash(private_key)))
    return Envelope(
        payload=base64.b64encode(payload),
        payload_type=IN_TOTO_PAYLOAD_TYPE,
        signatures=[Signature(sig=base64.b64encode(signature), keyid="")],
    )


def key_bundle(private_key: ec.EllipticCurvePrivateKey, payload: bytes) -> str:
    """Bundle JSON for a bare-key signature (verification material: public-key hint)."""
    material = bundle_v1.VerificationMaterial(
        public_key=common_v1.PublicKeyIdentifier(hint=key_hint(private_key.public_key())),
        tlog_entries=[],
    )
    bundle = bundle_v1.Bundle(
        media_type=BUNDLE_MEDIA_TYPE, verification_material=material, dsse_envelope=sign_envelope(private_key, payload)
    )
    return bundle.to_json()


def certificate_bundle(private_key: ec.EllipticCurvePrivateKey, chain: list[x509.Certificate], payload: bytes) -> str:
    """Bundle JSON for a certificate signature; ``chain`` is leaf first, then intermediates."""
    certs = [
        common_v1.X509Certificate(raw_bytes=base64.b64encode(c.public_bytes(serialization.Encoding.DER))) for c in chain
    ]
    material = bundle_v1.VerificationMaterial(
        x509_certificate_chain=common_v1.X509CertificateChain(certificates=certs), tlog_entries=[]
    )
    bundle = bundle_v1.Bundle(
        media_type=BUNDLE_MEDIA_TYPE, verification_material=material, dsse_envelope=sign_envelope(private_key, payload)
    )
    return bundle.to_json()


@dataclass(frozen=True)
class ParsedBundle:
    """What a bundle carries, before any trust decision."""

    path: Path
    kind: str  # "key" | "certificate" | "sigstore"
    payload_type: str
    payload: bytes
    signature: bytes
    key_hint: str | None
    chain: tuple[x509.Certificate, ...]
    raw: str
    timestamps: tuple[bytes, ...] = ()
    """Raw RFC 3161 ``TimeStampResp`` tokens from ``timestampVerificationData`` (not verified yet)."""


def read_bundle(path: Path) -> ParsedBundle:
    """Parse a Sigstore bundle holding a DSSE envelope (any of the three kinds)."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VerificationError(f"{path}: signature bundle not found", hint="was the run signed?") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VerificationError(f"{path}: cannot read the signature bundle ({exc})") from None
    try:
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        # model_signing writes bundles with older/newer field sets; normalise like its reader does.
        material = data.get("verificationMaterial", {})
        material.setdefault("tlogEntries", [])
        if isinstance(material.get("publicKey"), dict):
            material["publicKey"].setdefault("hint", None)
            for k in ("rawBytes", "keyDetails"):
                material["publicKey"].pop(k, None)
        bundle = bundle_v1.Bundle.from_dict(data)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise VerificationError(f"{path}: not a valid Sigstore bundle ({first})") from None
    envelope = bundle.dsse_envelope
    if envelope is None:
        raise VerificationError(f"{path}: bundle holds no DSSE envelope (expected a signed in-toto statement)")
    if len(envelope.signatures) != 1:
        raise VerificationError(
            f"{path}: DSSE envelope must hold exactly one signature, has {len(envelope.signatures)}"
        )
    vm = bundle.verification_material
    chain: tuple[x509.Certificate, ...] = ()
    hint: str | None = None
    if vm.public_key is not None:
        kind = "key"
        hint = vm.public_key.hint
    elif vm.x509_certificate_chain is not None:
        kind = "certificate"
        try:
            chain = tuple(x509.load_der_x509_certificate(c.raw_bytes) for c in vm.x509_certificate_chain.certificates)
        except ValueError:
            raise VerificationError(f"{path}: bundle holds a malformed certificate") from None
        if not chain:
            raise VerificationError(f"{path}: bundle holds an empty certificate chain")
    else:
        kind = "sigstore"
    tvd = vm.timestamp_verification_data
    timestamps = tuple(bytes(t.signed_timestamp) for t in tvd.rfc3161_timestamps) if tvd is not None else ()
    return ParsedBundle(
        path=path,
        kind=kind,
        payload_type=envelope.payload_type,
        payload=bytes(envelope.payload),
        signature=bytes(envelope.signatures[0].sig),
        key_hint=hint,
        chain=chain,
        raw=raw,
        timestamps=timestamps,
    )
