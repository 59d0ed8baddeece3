"""Checking a bundle's signature against what the verifier trusts: a key, a CA, or a Sigstore identity."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

from bastion.provenance.signing.bundle import (
    IN_TOTO_PAYLOAD_TYPE,
    ParsedBundle,
    ec_hash,
    key_fingerprint,
    key_hint,
    pae,
)
from bastion.provenance.signing.keys import load_certificates, load_public_key
from bastion.provenance.signing.sign_certificate import can_sign_code, certificate_identity
from bastion.provenance.signing.timestamp import Timestamp, TimestampError, TsaTrust, verify_timestamp
from bastion.provenance.verify.report import VerificationReport

PathArg = str | os.PathLike[str]


@dataclass
class Trust:
    """What the verifier trusts. Build with :meth:`from_args`."""

    now: datetime
    public_keys: list[ec.EllipticCurvePublicKey] = field(default_factory=list)
    roots: list[x509.Certificate] = field(default_factory=list)
    intermediates: list[x509.Certificate] = field(default_factory=list)
    identity: str | None = None
    issuer: str | None = None
    trust_config: Path | None = None
    tsa: TsaTrust | None = None
    _sigstore_config: Any = None

    @classmethod
    def from_args(
        cls,
        *,
        now: datetime,
        public_key: PathArg | ec.EllipticCurvePublicKey | list[Any] | tuple[Any, ...] | None = None,
        certificate_chain: PathArg | list[PathArg] | tuple[PathArg, ...] | None = None,
        identity: str | None = None,
        issuer: str | None = None,
        trust_config: PathArg | None = None,
        tsa_certificate_chain: PathArg | list[PathArg] | tuple[PathArg, ...] | None = None,
    ) -> Trust:
        keys: list[ec.EllipticCurvePublicKey] = []
        key_args: list[Any] = (
            [] if public_key is None else list(public_key) if isinstance(public_key, list | tuple) else [public_key]
        )
        for k in key_args:
            keys.append(k if isinstance(k, ec.EllipticCurvePublicKey) else load_public_key(k))
        chain_args: list[PathArg] = (
            []
            if certificate_chain is None
            else list(certificate_chain)
            if isinstance(certificate_chain, list | tuple)
            else [certificate_chain]
        )
        certs = load_certificates([Path(p) for p in chain_args], what="trusted certificate chain") if chain_args else []
        roots = [c for c in certs if c.subject == c.issuer]
        inters = [c for c in certs if c.subject != c.issuer]
        tc = Path(trust_config) if trust_config is not None else None
        tsa_args: list[PathArg] = (
            []
            if tsa_certificate_chain is None
            else list(tsa_certificate_chain)
            if isinstance(tsa_certificate_chain, list | tuple)
            else [tsa_certificate_chain]
        )
        tsa = TsaTrust.load([Path(p) for p in tsa_args], what="trusted TSA certificate chain") if tsa_args else None
        return cls(
            now=now,
            public_keys=keys,
            roots=roots,
            intermediates=inters,
            identity=identity,
            issuer=issuer,
            trust_config=tc,
            tsa=tsa,
        )

    def describe_keys(self) -> str:
        return ", ".join(key_fingerprint(k) for k in self.public_keys) or "no trusted key"


def check_bundle(bundle: ParsedBundle, trust: Trust, report: VerificationReport, *, what: str) -> dict[str, Any] | None:
    """Verify ``bundle``'s signature; return the signer identity, or ``None`` after recording failures."""
    if bundle.payload_type != IN_TOTO_PAYLOAD_TYPE:
        report.fail(
            "signature.invalid", f"{what}: unexpected DSSE payload type", IN_TOTO_PAYLOAD_TYPE, bundle.payload_type
        )
        return None
    if bundle.kind == "sigstore":  # keyless: the Sigstore verifier checks log times and TSA tokens itself
        return _check_sigstore(bundle, trust, report, what)
    ok, stamp = _check_timestamps(bundle, trust, report, what)
    if not ok:
        return None
    if stamp is not None:
        report.timestamps[what] = {"time": stamp.time.isoformat(), "tsa": stamp.tsa, "serial": stamp.serial}
    if bundle.kind == "key":
        return _check_key(bundle, trust, report, what)
    return _check_certificate(bundle, trust, report, what, stamp)


CLOCK_SKEW = timedelta(minutes=5)
"""How far a TSA's clock may run ahead of the verifier's before a token counts as from the future."""


def _check_timestamps(
    bundle: ParsedBundle, trust: Trust, report: VerificationReport, what: str
) -> tuple[bool, Timestamp | None]:
    """Verify the bundle's RFC 3161 tokens when TSA roots are trusted: (all good, earliest proven time).

    Without trusted TSA roots the tokens are not used (and cannot prove anything); with them, every
    token must verify and at least one must be present: whoever passes TSA roots relies on them.
    """
    if trust.tsa is None:
        return True, None
    if not bundle.timestamps:
        report.fail(
            "timestamp.missing",
            f"{what} carries no RFC 3161 timestamp, but a trusted TSA was given (--tsa-certificate-chain)",
            "a timestamp token from the trusted TSA",
            "none (signed without tsa_url)",
        )
        return False, None
    roots = " | ".join(r.subject.rfc4514_string() for r in trust.tsa.roots)
    stamps: list[Timestamp] = []
    for i, token in enumerate(bundle.timestamps):
        try:
            stamps.append(verify_timestamp(token, bundle.signature, trust.tsa))
        except TimestampError as exc:
            report.fail("timestamp.invalid", f"{what}: timestamp {i + 1}: {exc}", f"a token from {roots}", "invalid")
            return False, None
    first = min(stamps, key=lambda s: s.time)
    if first.time > trust.now + CLOCK_SKEW:
        report.fail(
            "timestamp.invalid",
            f"{what}: the timestamp lies in the future (TSA clock wrong, or the verifier's)",
            f"at most {trust.now.isoformat()}",
            first.time.isoformat(),
        )
        return False, None
    return True, first


def _check_key(bundle: ParsedBundle, trust: Trust, report: VerificationReport, what: str) -> dict[str, Any] | None:
    if not trust.public_keys:
        report.fail(
            "trust.missing",
            f"{what} is signed with a bare key; pass the trusted public key (--key)",
            "a trusted public key",
            f"key hint {bundle.key_hint}",
        )
        return None
    candidates = [k for k in trust.public_keys if not bundle.key_hint or key_hint(k) == bundle.key_hint]
    if not candidates:
        report.fail(
            "signature.untrusted_key",
            f"{what} was signed by a key that is not trusted",
            trust.describe_keys(),
            f"key with hint {bundle.key_hint}",
        )
        return None
    for key in candidates:
        try:
            key.verify(bundle.signature, pae(bundle.payload_type, bundle.payload), ec.ECDSA(ec_hash(key)))
        except InvalidSignature:
            continue
        fingerprint = key_fingerprint(key)
        report.trust_used.setdefault(what, {})["public_key"] = fingerprint
        if trust.identity is not None and trust.identity != fingerprint:
            report.fail("identity.mismatch", f"{what}: signed by another key", trust.identity, fingerprint)
            return None
        return {"type": "key", "fingerprint": fingerprint}
    report.fail(
        "signature.invalid",
        f"{what}: the signature does not match the signed content (the bundle was altered)",
        f"a valid ECDSA signature by {trust.describe_keys()}",
        "invalid signature",
    )
    return None


def _ee_policy() -> ExtensionPolicy:
    return ExtensionPolicy.permit_all().may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, None)


def _check_certificate(
    bundle: ParsedBundle, trust: Trust, report: VerificationReport, what: str, stamp: Timestamp | None = None
) -> dict[str, Any] | None:
    leaf, *bundled = bundle.chain
    if not trust.roots:
        report.fail(
            "trust.missing",
            f"{what} is signed with a certificate; pass the trusted CA certificate(s) (--certificate-chain)",
            "a trusted root CA",
            f"leaf {leaf.subject.rfc4514_string()} issued by {leaf.issuer.rfc4514_string()}",
        )
        return None
    window = f"valid {leaf.not_valid_before_utc.isoformat()} to {leaf.not_valid_after_utc.isoformat()}"
    # The chain is checked at the signing time the TSA proves; without a proof, at the verifier's time.
    at = stamp.time if stamp is not None else trust.now
    when = f"signed at {at.isoformat()} (RFC 3161 timestamp by {stamp.tsa})" if stamp else f"valid at {at.isoformat()}"
    if at > leaf.not_valid_after_utc:
        if stamp is not None:
            message = f"{what}: the signature was made after the signing certificate expired (proven by timestamp)"
        elif bundle.timestamps:
            message = (
                f"{what}: the signing certificate has expired; the bundle carries {len(bundle.timestamps)} RFC 3161 "
                "timestamp(s) that could prove it was signed in time: pass the TSA's root CA "
                "(--tsa-certificate-chain) to check them"
            )
        else:
            message = (
                f"{what}: the signing certificate has expired and the signature carries no RFC 3161 timestamp "
                "proving it was made while the certificate was valid (sign with tsa_url to get one)"
            )
        report.fail("certificate.expired", message, when, window)
        return None
    if at < leaf.not_valid_before_utc:
        report.fail("certificate.not_yet_valid", f"{what}: the signing certificate is not valid yet", when, window)
        return None
    builder = (
        PolicyBuilder()
        .store(Store(trust.roots))
        .time(at)
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=_ee_policy())
    )
    try:
        verified = builder.build_client_verifier().verify(leaf, [*bundled, *trust.intermediates])
    except Exception as exc:  # cryptography's VerificationError; message names the failing certificate
        detail = "" if "candidates exhausted" in str(exc) else f" ({exc})"
        report.fail(
            "certificate.untrusted",
            f"{what}: the signing certificate does not chain to a trusted CA{detail}",
            " | ".join(r.subject.rfc4514_string() for r in trust.roots),
            f"leaf {leaf.subject.rfc4514_string()} issued by {leaf.issuer.rfc4514_string()}",
        )
        return None
    if not can_sign_code(leaf):
        report.fail(
            "certificate.usage", f"{what}: the certificate is not valid for code signing", "EKU codeSigning", "other"
        )
        return None
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):
        report.fail("signature.invalid", f"{what}: only EC certificates are supported", "EC key", type(key).__name__)
        return None
    try:
        key.verify(bundle.signature, pae(bundle.payload_type, bundle.payload), ec.ECDSA(ec_hash(key)))
    except InvalidSignature:
        report.fail(
            "signature.invalid",
            f"{what}: the signature does not match the signed content (the bundle was altered)",
            f"a valid signature by {leaf.subject.rfc4514_string()}",
            "invalid signature",
        )
        return None
    report.trust_used.setdefault(what, {})["certificate_chain"] = [_cert_fp(c) for c in verified.chain]
    ident = certificate_identity(leaf)
    if trust.identity is not None and trust.identity not in ([*ident["san"], ident["subject"], ident["common_name"]]):
        report.fail(
            "identity.mismatch",
            f"{what}: signed by another identity",
            trust.identity,
            ", ".join([*ident["san"], ident["subject"]]),
        )
        return None
    if trust.issuer is not None and trust.issuer != ident["issuer"]:
        report.fail("identity.mismatch", f"{what}: certificate from another issuer", trust.issuer, ident["issuer"])
        return None
    return ident


def sigstore_trust_config(trust: Trust) -> Any:
    from sigstore.models import ClientTrustConfig

    from bastion.provenance.signing.sign_sigstore import load_trust_config

    if trust._sigstore_config is None:
        trust._sigstore_config = (
            load_trust_config(trust.trust_config, what="--trust-config")
            if trust.trust_config is not None
            else ClientTrustConfig.production()
        )
    return trust._sigstore_config


def _check_sigstore(bundle: ParsedBundle, trust: Trust, report: VerificationReport, what: str) -> dict[str, Any] | None:
    if not trust.identity or not trust.issuer:
        report.fail(
            "trust.missing",
            f"{what} is a keyless Sigstore signature; pass the expected --identity and --issuer",
            "identity and OIDC issuer",
            "none given",
        )
        return None
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier, policy

    try:
        config = sigstore_trust_config(trust)
    except Exception as exc:
        report.fail(
            "trust.missing",
            f"cannot load the Sigstore trust root ({type(exc).__name__}: {exc})",
            "a trust root (offline: --trust-config FILE)",
            "none",
        )
        return None
    try:
        sbundle = Bundle.from_json(bundle.raw)
        ptype, payload = Verifier(trusted_root=config.trusted_root).verify_dsse(
            sbundle, policy.Identity(identity=trust.identity, issuer=trust.issuer)
        )
    except SigstoreError as exc:
        report.fail("signature.invalid", f"{what}: Sigstore verification failed: {exc}", trust.identity, None)
        return None
    except Exception as exc:
        report.fail("signature.invalid", f"{what}: Sigstore verification failed ({type(exc).__name__}: {exc})")
        return None
    if payload != bundle.payload or ptype != bundle.payload_type:
        report.fail("signature.invalid", f"{what}: verified payload differs from the envelope")
        return None
    return {"type": "sigstore", "identity": trust.identity, "issuer": trust.issuer}


def _cert_fp(cert: x509.Certificate) -> str:
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()


def _cert_entry(cert: x509.Certificate) -> dict[str, str]:
    return {
        "fingerprint": _cert_fp(cert),
        "subject": cert.subject.rfc4514_string(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
    }


def trust_material(trust: Trust) -> dict[str, Any]:
    """Everything a verification trusted, in a form that can be stored and reloaded (PEM) or compared
    (SHA-256 fingerprints): public keys, CA roots and intermediates, TSA roots and intermediates, the
    Sigstore trust root and the expected identity. Nothing here is secret.

    A registry that pins this next to a run can verify it years later against the same material,
    whatever is configured on the day of the audit.
    """
    sigstore: dict[str, Any] | None = None
    if trust.trust_config is not None:
        try:
            digest = "sha256:" + hashlib.sha256(trust.trust_config.read_bytes()).hexdigest()
        except OSError:
            digest = None
        sigstore = {"trust_config": str(trust.trust_config), "sha256": digest}
    elif trust.identity and trust.issuer:
        sigstore = {"trust_config": "public Sigstore (production)", "sha256": None}
    return {
        "public_keys": [
            {
                "fingerprint": key_fingerprint(k),
                "pem": k.public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                ).decode("ascii"),
            }
            for k in trust.public_keys
        ],
        "ca_roots": [_cert_entry(c) for c in trust.roots],
        "ca_intermediates": [_cert_entry(c) for c in trust.intermediates],
        "tsa_roots": [_cert_entry(c) for c in trust.tsa.roots] if trust.tsa else [],
        "tsa_intermediates": [_cert_entry(c) for c in trust.tsa.intermediates] if trust.tsa else [],
        "sigstore": sigstore,
        "identity": trust.identity,
        "issuer": trust.issuer,
    }
