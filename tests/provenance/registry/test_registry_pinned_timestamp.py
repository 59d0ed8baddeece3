"""Pinned TSA roots: a certificate-signed, timestamped run indexed while its certificate was valid still
verifies through ``registry verify`` after the certificate expired, with no trust given that day.

The TSA is real (on 127.0.0.1, tests/provenance/tsa.py); expiry is simulated by verifying a month later.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.provenance.registry import Trust, add_paths, open_registry, verify_pinned
from bastion.provenance.signing import sign_run
from bastion.provenance.signing.testing import _name, issue_certificate, make_run_dir, write_cert
from tests.provenance.signing.test_signing_timestamp import ShortLivedCA, cert_signing
from tests.provenance.tsa import LocalTSA, TsaPKI, make_tsa_pki, serve_tsa

NOW = dt.datetime.now(dt.UTC)
MONTH_LATER = NOW + dt.timedelta(days=30)


def _fp(pem: Path) -> str:
    return "sha256:" + x509.load_pem_x509_certificate(pem.read_bytes()).fingerprint(hashes.SHA256()).hex()


@pytest.fixture(scope="module")
def short_ca(tmp_path_factory: pytest.TempPathFactory) -> ShortLivedCA:
    d = tmp_path_factory.mktemp("short-lived-ca")
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("Acme Short-Lived CA", "Acme")
    root = issue_certificate(
        key, name, key, name, ca=True, path_length=0,
        not_before=NOW - dt.timedelta(days=1), not_after=NOW + dt.timedelta(days=3650),
    )  # fmt: skip
    return ShortLivedCA(root_pem=write_cert(root, d / "root.pem"), root_key=key, directory=d)


@pytest.fixture(scope="module")
def tsa_pki(tmp_path_factory: pytest.TempPathFactory) -> TsaPKI:
    return make_tsa_pki(tmp_path_factory.mktemp("tsa"))


@pytest.fixture
def tsa(tsa_pki: TsaPKI) -> Iterator[LocalTSA]:
    with serve_tsa(LocalTSA(tsa_pki)) as server:
        yield server


def test_an_expired_certificate_still_verifies_against_the_pinned_tsa_root(
    registry_db: str, short_ca: ShortLivedCA, tsa: LocalTSA, tmp_path: Path
) -> None:
    now = dt.datetime.now(dt.UTC)  # (not the module's NOW: the suite may reach this test long after import)
    leaf = short_ca.leaf("short", now - dt.timedelta(minutes=1), now + dt.timedelta(minutes=30))
    stamped = make_run_dir(tmp_path / "stamped", run_id="stamped")
    sign_run(stamped, cert_signing(leaf, tsa))
    plain = make_run_dir(tmp_path / "plain", run_id="plain")
    sign_run(plain, cert_signing(leaf, None))
    with open_registry(registry_db) as reg:
        stamped_trust = Trust(certificate_chain=(short_ca.root_pem,), tsa_certificate_chain=(tsa.pki.root_pem,))
        assert add_paths(reg, [str(stamped)], stamped_trust)[0].status == "added"
        assert add_paths(reg, [str(plain)], Trust(certificate_chain=(short_ca.root_pem,)))[0].status == "added"
    with open_registry(registry_db) as reg:
        today = {c.run_id: c for c in verify_pinned(reg, None)}
        assert today["stamped"].ok and today["plain"].ok
        assert _fp(short_ca.root_pem) in today["stamped"].pinned and _fp(tsa.pki.root_pem) in today["stamped"].pinned
        assert _fp(tsa.pki.root_pem) not in today["plain"].pinned
        later = {c.run_id: c for c in verify_pinned(reg, None, now=MONTH_LATER)}
    assert later["stamped"].ok, later["stamped"].problems
    # Without a timestamp nothing proves it was signed in time: expired, as `bastion verify` says too.
    assert not later["plain"].ok and any(p.startswith("certificate.expired") for p in later["plain"].problems)
