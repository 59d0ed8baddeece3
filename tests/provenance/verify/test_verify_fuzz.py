"""Hostile record contents never crash verification: every outcome is a report (or, for the bundle
reader, a VerificationError), never a traceback."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.errors import VerificationError
from bastion.provenance.signing import generate_key_pair
from bastion.provenance.signing.bundle import key_bundle, read_bundle
from bastion.provenance.signing.testing import make_run_dir
from bastion.provenance.verify import verify

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.sampled_from(
                ["_type", "subject", "predicate", "predicateType", "name", "digest", "sha256", "ledger", "head",
                 "path", "entries", "datasets", "overlap", "run_id", "verificationMaterial", "publicKey",
                 "dsseEnvelope", "mediaType", "payload", "signatures", "x"]
            ),
            children,
            max_size=5,
        ),
    ),
    max_leaves=20,
)  # fmt: skip

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(json_values)
def test_bundle_reader_only_raises_verification_errors(tmp_path: Path, value: Any) -> None:
    path = tmp_path / "b.sigstore.json"
    path.write_text(json.dumps(value))
    with contextlib.suppress(VerificationError):
        read_bundle(path)


@SETTINGS
@given(json_values, st.sampled_from(["in_toto", "raw"]))
def test_signed_hostile_statements_give_reports(tmp_path: Path, value: Any, shape: str) -> None:
    """Content signed by the trusted key but malformed: verify reports, it does not crash."""
    out = tmp_path / "out"
    if not out.exists():
        make_run_dir(out)
        generate_key_pair(tmp_path / "keys")
    key = serialization.load_pem_private_key((tmp_path / "keys/signing.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    if shape == "in_toto":
        value = {
            "_type": "https://in-toto.io/Statement/v1",
            "predicateType": "https://bastion.dev/provenance/training-run/v1",
            "subject": value if isinstance(value, list) else [value],
            "predicate": value,
        }
    payload = json.dumps(value).encode()
    (out / "bastion/statement.json").write_bytes(payload)
    (out / "bastion/statement.sigstore.json").write_text(key_bundle(key, payload))
    report = verify(out, public_key=tmp_path / "keys/signing.pub", policy=None)
    assert not report.ok
    assert "signature" in report.passed and report.failures
