"""RFC 3161 timestamps from the organisation's own time-stamping authority (TSA).

A certificate expires; a run record must still verify years later. The proof that a signature was
made while its certificate was valid is a timestamp token: the TSA signs (hash of the signature,
time). At signing, :func:`timestamp_bundle` asks the TSA for a token over the DSSE signature bytes
(the message Sigstore itself timestamps) and stores the whole ``TimeStampResp`` in the bundle's
standard field ``verificationMaterial.timestampVerificationData.rfc3161Timestamps[].signedTimestamp``
(base64 DER, as sigstore-python writes it): no sidecar file. At verification,
:func:`verify_timestamp` checks the token against the TSA roots the verifier trusts (chain valid at
the token's time, EKU timeStamping, the imprint equals the hash of this signature) and returns the
proven time, which the certificate check then uses instead of "now".

Client and verifier are ``rfc3161-client`` (the library sigstore-python uses for the same job).
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client import VerificationError as Rfc3161Error

from bastion.errors import ConfigError, SigningError
from bastion.provenance.signing.keys import load_certificates

REQUEST_CONTENT_TYPE = "application/timestamp-query"
REPLY_CONTENT_TYPE = "application/timestamp-reply"
MAX_REPLY_BYTES = 1 << 20
"""A timestamp reply is a few KiB; anything larger is not one."""


class TimestampError(Exception):
    """A timestamp token did not verify; the message says why, for the person reading the report."""


@dataclass(frozen=True)
class TsaTrust:
    """The TSA certificates a verifier (or signer, checking the reply) trusts: roots plus intermediates."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...] = ()

    @classmethod
    def from_certificates(cls, certs: Sequence[x509.Certificate]) -> TsaTrust:
        """Self-signed certificates become roots, the others intermediates (or the TSA's own certificate)."""
        return cls(
            roots=tuple(c for c in certs if c.subject == c.issuer),
            intermediates=tuple(c for c in certs if c.subject != c.issuer),
        )

    @classmethod
    def load(cls, paths: Sequence[Path], *, what: str = "TSA certificate chain") -> TsaTrust:
        trust = cls.from_certificates(load_certificates(list(paths), what=what))
        if not trust.roots:
            raise ConfigError(
                f"{what}: no self-signed root certificate among {', '.join(str(p) for p in paths)}",
                hint="include the TSA's root CA certificate (PEM); intermediates are optional",
            )
        return trust


@dataclass(frozen=True)
class Timestamp:
    """A verified token: when, and by which TSA certificate."""

    time: datetime
    tsa: str
    """Subject of the TSA certificate that signed the token."""
    serial: int


def request_timestamp(url: str, message: bytes, *, timeout: float = 10.0) -> bytes:
    """POST an RFC 3161 request over SHA-256(``message``) to ``url``; return the raw ``TimeStampResp``.

    The reply is checked for its nonce and imprint here; its signature by :func:`verify_timestamp`.
    """
    request = TimestampRequestBuilder().hash_algorithm(HashAlgorithm.SHA256).data(message).nonce(nonce=True).build()
    req = urllib.request.Request(
        url, data=request.as_bytes(), method="POST", headers={"Content-Type": REQUEST_CONTENT_TYPE}
    )
    hint = "check tsa_url and that the TSA is reachable from this machine, or remove tsa_url to sign without one"
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            ctype = resp.headers.get("Content-Type", "")
            body = resp.read(MAX_REPLY_BYTES + 1)
    except urllib.error.HTTPError as exc:
        raise SigningError(f"timestamp authority {url} answered HTTP {exc.code} {exc.reason}", hint=hint) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SigningError(f"cannot reach the timestamp authority {url}: {reason}", hint=hint) from None
    if len(body) > MAX_REPLY_BYTES:
        raise SigningError(f"timestamp authority {url} sent more than {MAX_REPLY_BYTES} bytes: not a timestamp reply")
    if ctype.split(";")[0].strip().lower() != REPLY_CONTENT_TYPE:
        raise SigningError(
            f"timestamp authority {url} answered with Content-Type {ctype or '(none)'}, expected {REPLY_CONTENT_TYPE}",
            hint="is tsa_url the RFC 3161 endpoint of the TSA (not its web page)?",
        )
    try:
        response = decode_timestamp_response(body)
    except ValueError as exc:
        raise SigningError(f"timestamp authority {url} sent a malformed reply ({exc})") from None
    if response.status not in (0, 1):  # granted, grantedWithMods
        detail = ": " + "; ".join(response.status_string) if response.status_string else ""
        raise SigningError(f"timestamp authority {url} refused the request (PKIStatus {response.status}{detail})")
    if response.tst_info.nonce != request.nonce:
        raise SigningError(f"timestamp authority {url} answered with another request's nonce (replayed reply?)")
    return response.as_bytes()


def verify_timestamp(token: bytes, message: bytes, trust: TsaTrust) -> Timestamp:
    """Verify a raw ``TimeStampResp`` over ``message`` against ``trust``; raise :class:`TimestampError`."""
    try:
        response = decode_timestamp_response(token)
    except ValueError as exc:
        raise TimestampError(f"not an RFC 3161 timestamp response ({exc})") from None
    if not trust.roots:
        raise TimestampError("no trusted TSA root configured")
    builder = VerifierBuilder()
    for root in trust.roots:
        builder = builder.add_root_certificate(root)
    for inter in trust.intermediates:
        builder = builder.add_intermediate_certificate(inter)
    try:
        builder.build().verify_message(response, message)
    except Rfc3161Error as exc:
        raise TimestampError(_explain(str(exc), trust)) from None
    except ValueError as exc:  # malformed inner structures surface as ValueError from the parser
        raise TimestampError(f"malformed timestamp token ({exc})") from None
    tsa = _signer_subject(response)
    return Timestamp(time=response.tst_info.gen_time, tsa=tsa, serial=response.tst_info.serial_number)


def _explain(reason: str, trust: TsaTrust) -> str:
    roots = " | ".join(r.subject.rfc4514_string() for r in trust.roots)
    if "Mismatch between messages" in reason:
        return "the timestamp token covers other bytes than this signature (copied from another signature?)"
    if "Error while verifying certificates" in reason:
        # OpenSSL's error stack: keep its one human sentence ("Verify error: unable to get local issuer ...").
        m = re.search(r'data: "([^"]+)"', reason) or re.search(r'reason: "([^"]+)"', reason)
        detail = m.group(1) if m else reason.split(": ", 1)[-1][:200]
        return f"the timestamp token is not signed by a trusted TSA (trusted: {roots}): {detail}"
    return f"the timestamp token is invalid: {reason}"


def _signer_subject(response: TimeStampResponse) -> str:
    infos = list(response.signed_data.signer_infos)
    certs = [x509.load_der_x509_certificate(c) for c in response.signed_data.certificates]
    for cert in certs:
        if infos and cert.issuer == infos[0].issuer and cert.serial_number == infos[0].serial_number:
            return cert.subject.rfc4514_string()
    return infos[0].issuer.rfc4514_string() if infos else "unknown TSA"


def bundle_signature(bundle: dict[str, Any]) -> bytes:
    """The raw DSSE signature bytes of a bundle (what is timestamped)."""
    sigs = bundle["dsseEnvelope"]["signatures"]
    return base64.b64decode(sigs[0]["sig"])


def bundle_timestamps(bundle: dict[str, Any]) -> list[bytes]:
    """The raw ``TimeStampResp`` tokens a bundle carries (none for older bundles)."""
    material = bundle.get("verificationMaterial") or {}
    data = material.get("timestampVerificationData") or {}
    out = []
    for entry in data.get("rfc3161Timestamps") or []:
        out.append(base64.b64decode(entry["signedTimestamp"], validate=True))
    return out


@dataclass(frozen=True)
class Timestamper:
    """Requests a token over a bundle's signature and stores it in the bundle (see the module docs)."""

    url: str
    trust: TsaTrust
    timeout: float = 10.0

    def stamp(self, bundle_json: str) -> str:
        """``bundle_json`` with one more verified RFC 3161 token in its timestamp verification data."""
        bundle = json.loads(bundle_json)
        signature = bundle_signature(bundle)
        token = request_timestamp(self.url, signature, timeout=self.timeout)
        try:
            verify_timestamp(token, signature, self.trust)
        except TimestampError as exc:
            raise SigningError(
                f"timestamp from {self.url} does not verify against tsa_certificate_chain: {exc}",
                hint="tsa_certificate_chain must hold the root (and intermediates) of the TSA at tsa_url",
            ) from None
        material = bundle.setdefault("verificationMaterial", {})
        data = material.setdefault("timestampVerificationData", {})
        data.setdefault("rfc3161Timestamps", []).append({"signedTimestamp": base64.b64encode(token).decode("ascii")})
        return json.dumps(bundle, separators=(",", ":"))

    def stamp_file(self, path: Path) -> None:
        """Stamp the bundle stored in ``path`` in place (used for model_signing's ``model.sig``)."""
        path.write_text(self.stamp(path.read_text(encoding="utf-8")), encoding="utf-8")


def fingerprint(cert: x509.Certificate) -> str:
    return "sha256:" + cert.fingerprint(hashes.SHA256()).hex()
