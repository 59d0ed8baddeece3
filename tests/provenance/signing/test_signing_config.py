"""SigningConfig.from_mapping: what plugins read from trainer configs; every mistake names its key."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import BastionError, ConfigError, InputError
from bastion.provenance.signing import KeyPair, SigningConfig, generate_key_pair, load_public_key
from bastion.provenance.signing.bundle import key_fingerprint
from bastion.provenance.signing.testing import TestPKI

SOURCE = "axolotl.yaml: bastion_signing"


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        ({}, "backend: Field required"),
        ({"backend": "gpg"}, "backend: Input should be 'key', 'certificate' or 'sigstore'"),
        ({"backend": "key"}, "private_key: required for backend 'key'"),
        ({"backend": "key", "private_key": "k.pem", "passwd": "x"}, "passwd: unknown key"),
        ({"backend": "key", "private_key": 5}, "private_key: Input should be a valid string"),
        ({"backend": "certificate", "private_key": "k.pem"}, "certificate: required for backend 'certificate'"),
        ({"backend": "key", "private_key": "k", "certificate_chain": ["c"]}, "certificate_chain: only used by"),
        ({"backend": "key", "private_key": "k", "trust_config": "t.json"}, "trust_config: only used by backend"),
        ({"backend": "sigstore", "private_key": "k.pem"}, "private_key: not used by backend 'sigstore'"),
        ({"backend": "sigstore", "staging": True, "trust_config": "t"}, "staging and trust_config are exclusive"),
        ({"backend": "sigstore", "staging": "perhaps"}, "staging: Input should be a valid boolean"),
        ({"backend": "key", "private_key": " "}, "private_key: must not be empty"),
    ],
)
def test_invalid_mappings_name_the_key(mapping: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        SigningConfig.from_mapping(mapping, source=SOURCE)
    assert str(err.value).startswith(SOURCE)
    assert fragment in str(err.value)


def test_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        SigningConfig.from_mapping(["key"], source=SOURCE)  # type: ignore[arg-type]


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    cfg = SigningConfig.from_mapping(
        {"backend": "certificate", "private_key": "k.pem", "certificate": "/abs/c.pem", "certificate_chain": "ca.pem"},
        base_dir=tmp_path,
    )
    assert cfg.private_key == tmp_path / "k.pem"
    assert cfg.certificate == Path("/abs/c.pem")
    assert cfg.certificate_chain == (tmp_path / "ca.pem",)


def test_from_mapping_passes_a_config_through() -> None:
    cfg = SigningConfig(backend="key", private_key=Path("k.pem"))
    assert SigningConfig.from_mapping(cfg) is cfg  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "backend",
                "private_key",
                "password_env",
                "certificate",
                "certificate_chain",
                "trust_config",
                "staging",
                "bogus",
            ]
        ),
        st.one_of(
            st.none(), st.booleans(), st.integers(), st.text(max_size=8), st.lists(st.text(max_size=4), max_size=2)
        ),
        max_size=5,
    )
)
def test_any_mapping_gives_a_config_or_a_config_error(mapping: dict[str, Any]) -> None:
    try:
        cfg = SigningConfig.from_mapping(mapping, source=SOURCE)
    except ConfigError as exc:
        assert str(exc).startswith(SOURCE)
    else:
        assert cfg.backend in ("key", "certificate", "sigstore")


def test_missing_key_file_and_non_pem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="private key not found"):
        SigningConfig(backend="key", private_key=tmp_path / "nope.pem").signer()
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    with pytest.raises(InputError, match="not a PEM private key"):
        SigningConfig(backend="key", private_key=bad).signer()


def test_rsa_keys_are_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "rsa.pem"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(ConfigError, match="only elliptic-curve keys"):
        SigningConfig(backend="key", private_key=path).signer()


def test_certificate_must_belong_to_the_key_and_allow_code_signing(pki: TestPKI) -> None:
    with pytest.raises(ConfigError, match="was not issued for the key"):
        SigningConfig(backend="certificate", private_key=pki.leaf_key, certificate=pki.other_leaf_cert).signer()
    with pytest.raises(ConfigError, match="not valid for code signing"):
        SigningConfig(backend="certificate", private_key=pki.server_leaf_key, certificate=pki.server_leaf_cert).signer()
    signer = SigningConfig(
        backend="certificate",
        private_key=pki.leaf_key,
        certificate=pki.leaf_cert,
        certificate_chain=(pki.intermediate_cert,),
    ).signer()
    assert signer.identity["san"] == [pki.leaf_email]
    assert signer.identity["issuer"] == "CN=Acme Signing CA,O=Acme"


def test_password_env_that_is_not_set(keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BASTION_TEST_UNSET_PASSWORD", raising=False)
    with pytest.raises(ConfigError, match="password_env: environment variable BASTION_TEST_UNSET_PASSWORD is not set"):
        SigningConfig(backend="key", private_key=keys.private_key, password_env="BASTION_TEST_UNSET_PASSWORD").signer()


def test_password_on_an_unencrypted_key(keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TEST_PW", "secret-value-123")
    with pytest.raises(ConfigError, match="not encrypted") as err:
        SigningConfig(backend="key", private_key=keys.private_key, password_env="BASTION_TEST_PW").signer()
    assert "secret-value-123" not in str(err.value)


def test_keygen_writes_a_private_key_only_its_owner_can_read(tmp_path: Path) -> None:
    pair = generate_key_pair(tmp_path / "k")
    assert stat.S_IMODE(pair.private_key.stat().st_mode) == 0o600
    assert pair.private_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pair.fingerprint == key_fingerprint(load_public_key(pair.public_key))
    assert pair.fingerprint.startswith("sha256:") and len(pair.fingerprint) == 7 + 64


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    first = generate_key_pair(tmp_path)
    before = first.private_key.read_bytes()
    with pytest.raises(InputError, match="refusing to overwrite"):
        generate_key_pair(tmp_path)
    assert first.private_key.read_bytes() == before
    assert generate_key_pair(tmp_path, force=True).private_key.read_bytes() != before


def test_load_public_key_errors(tmp_path: Path, pki: TestPKI) -> None:
    with pytest.raises(BastionError, match="public key not found"):
        load_public_key(tmp_path / "x.pub")
    (tmp_path / "junk.pub").write_text("junk")
    with pytest.raises(InputError, match="not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")
    # A certificate is accepted as a public key source.
    assert load_public_key(pki.leaf_cert).curve.name == "secp256r1"
