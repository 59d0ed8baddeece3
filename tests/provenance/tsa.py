"""A real RFC 3161 time-stamping authority on 127.0.0.1, for the timestamp tests.

It speaks the wire protocol (``POST`` of a DER ``TimeStampReq`` with Content-Type
``application/timestamp-query``, answered by a DER ``TimeStampResp``,
``application/timestamp-reply``) and signs CMS SignedData tokens whose content is a TSTInfo, with
the signed attributes RFC 3161/5816 require (content type, message digest, ESS signingCertificateV2).
Built with ``cryptography`` (keys, certificates, ECDSA) and ``asn1crypto`` (the ASN.1 structures;
neither rfc3161-client nor cryptography can build a response).

``clock`` sets the time the TSA puts in its tokens, so that tests can stamp "in the past" without
sleeping.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bastion.provenance.signing.testing import issue_certificate, write_cert

POLICY_OID = "1.3.6.1.4.1.57264.2"  # any policy OID; the TSA states it in every token


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme TSA"), x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    )


def tsa_certificate(
    key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey, issuer: x509.Name, cn: str
) -> x509.Certificate:
    """A TSA leaf: critical ExtendedKeyUsage id-kp-timeStamping only (RFC 3161 section 2.3)."""
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=3650))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


@dataclass
class TsaPKI:
    """A TSA root CA and the TSA's signing certificate; ``root_pem`` is what verifiers trust."""

    root_pem: Path
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    root: x509.Certificate


def make_tsa_pki(directory: Path, name: str = "Acme") -> TsaPKI:
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    rk = ec.generate_private_key(ec.SECP256R1())
    rn = _name(f"{name} TSA Root CA")
    root = issue_certificate(
        rk,
        rn,
        rk,
        rn,
        ca=True,
        path_length=0,
        not_before=now - dt.timedelta(days=3650),
        not_after=now + dt.timedelta(days=7300),
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = tsa_certificate(key, rk, rn, f"{name} Time Stamping Authority")
    return TsaPKI(root_pem=write_cert(root, directory / f"{name.lower()}-tsa-root.pem"), key=key, cert=cert, root=root)


@dataclass
class LocalTSA:
    """Answers RFC 3161 requests on ``url``; ``requests`` counts them, ``clock`` is the token time."""

    pki: TsaPKI
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(dt.UTC))
    url: str = ""
    requests: int = 0
    _serial: int = 0

    def respond(self, body: bytes) -> bytes:
        req = tsp.TimeStampReq.load(body)
        self._serial += 1
        info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": POLICY_OID,
                "message_imprint": req["message_imprint"],
                "serial_number": self._serial,
                "gen_time": self.clock().astimezone(dt.UTC).replace(microsecond=0),
                "accuracy": {"seconds": 1},
                "ordering": False,
                "nonce": req["nonce"].native if req["nonce"].native is not None else core.Void(),
            }
        )
        encap = info.dump()
        cert_der = self.pki.cert.public_bytes(serialization.Encoding.DER)
        asn1_cert = asn1_x509.Certificate.load(cert_der)
        ess = tsp.SigningCertificateV2(
            {
                "certs": [
                    {
                        "hash_algorithm": {"algorithm": "sha256"},
                        "cert_hash": hashlib.sha256(cert_der).digest(),
                        "issuer_serial": {
                            "issuer": [asn1_x509.GeneralName(name="directory_name", value=asn1_cert.issuer)],
                            "serial_number": asn1_cert.serial_number,
                        },
                    }
                ]
            }
        )
        signed_attrs = cms.CMSAttributes(
            [
                cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
                cms.CMSAttribute({"type": "message_digest", "values": [hashlib.sha256(encap).digest()]}),
                cms.CMSAttribute({"type": "signing_certificate_v2", "values": [ess]}),
            ]
        )
        signature = self.pki.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    name="issuer_and_serial_number",
                    value={"issuer": asn1_cert.issuer, "serial_number": asn1_cert.serial_number},
                ),
                "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
                "signed_attrs": signed_attrs,
                "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": "sha256_ecdsa"}),
                "signature": signature,
            }
        )
        signed_data = cms.SignedData(
            {
                "version": "v3",
                "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
                "encap_content_info": {"content_type": "tst_info", "content": core.ParsableOctetString(encap)},
                "certificates": [asn1_cert] if req["cert_req"].native else [],
                "signer_infos": [signer_info],
            }
        )
        token = cms.ContentInfo({"content_type": "signed_data", "content": signed_data})
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()


def _handler(tsa: LocalTSA) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            tsa.requests += 1
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Type") != "application/timestamp-query":
                self.send_error(415, "expected application/timestamp-query")
                return
            reply = tsa.respond(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve_tsa(tsa: LocalTSA) -> Iterator[LocalTSA]:
    """Run ``tsa`` on 127.0.0.1 (a free port) for the duration of the ``with`` block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(tsa))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    tsa.url = f"http://127.0.0.1:{server.server_address[1]}/tsr"
    try:
        yield tsa
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
