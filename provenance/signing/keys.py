"""Signing keys: generation (``bastion keygen``) and loading, with passwords taken from the environment.

A password is never accepted on the command line or in a config file, only as the *name* of an
environment variable, so it cannot end up in shell history, process listings, configs or logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import ConfigError, InputError, SigningError
from bastion.provenance.signing.bundle import SUPPORTED_CURVES, key_fingerprint

PRIVATE_KEY_NAME = "signing.pem"
PUBLIC_KEY_NAME = "signing.pub"


def password_from_env(var: str | None, *, what: str = "password_env") -> bytes | None:
    """The password held in environment variable ``var`` (``None`` when no variable is named)."""
    if not var:
        return None
    value = os.environ.get(var)
    if value is None:
        raise ConfigError(
            f"{what}: environment variable {var} is not set",
            hint=f"export {var}=... with the key's password (the value is never logged)",
        )
    if not value:
        raise ConfigError(f"{what}: environment variable {var} is empty")
    return value.encode("utf-8")


def load_private_key(path: str | os.PathLike[str], *, password_env: str | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PEM EC private key (P-256, P-384 or P-521)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError("private key not found", path=p, hint="create one with `bastion keygen`") from None
    except OSError as exc:
        raise InputError(f"cannot read the private key: {exc.strerror or exc}", path=p) from None
    password = password_from_env(password_env)
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        if password is None:
            raise ConfigError(
                f"{p}: the private key is encrypted but no password was given",
                hint="set password_env (or --password-env) to the NAME of an environment variable holding it",
            ) from None
        raise ConfigError(f"{p}: the private key is not encrypted; drop password_env") from None
    except ValueError:
        if password is not None:
            raise SigningError(
                f"{p}: cannot decrypt the private key (wrong password in ${password_env}, or not a PEM key)"
            ) from None
        raise InputError("not a PEM private key", path=p) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{p}: only elliptic-curve keys (P-256/P-384/P-521) are supported for signing")
    if key.curve.name not in SUPPORTED_CURVES:
        raise ConfigError(f"{p}: curve {key.curve.name} is not supported; use P-256 (bastion keygen)")
    return key


def load_public_key(path: str | os.PathLike[str]) -> ec.EllipticCurvePublicKey:
    """Load a PEM EC public key (or take the public key out of a PEM certificate)."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise InputError("public key not found", path=p) from None
    except OSError as exc:
        raise InputError(f"cannot read the public key: {exc.strerror or exc}", path=p) from None
    if b"PRIVATE KEY-----" in data:
        raise InputError(
            "this is a PRIVATE key; a verifier needs the PUBLIC key",
            path=p,
            hint="pass the .pub file written next to it by bastion keygen (keep the private key with the signer)",
        )
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        try:
            key = x509.load_pem_x509_certificate(data).public_key()
        except ValueError:
            raise InputError(
                "not a PEM public key", path=p, hint="pass the .pub file written by bastion keygen"
            ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise InputError("not an elliptic-curve public key", path=p)
    return key


def load_certificates(paths: list[Path] | tuple[Path, ...], *, what: str) -> list[x509.Certificate]:
    """All PEM certificates in the given files, in order."""
    certs: list[x509.Certificate] = []
    for p in paths:
        try:
            data = Path(p).read_bytes()
        except FileNotFoundError:
            raise InputError(f"{what} not found", path=p) from None
        except OSError as exc:
            raise InputError(f"cannot read {what}: {exc.strerror or exc}", path=p) from None
        try:
            found = x509.load_pem_x509_certificates(data)
        except ValueError:
            raise InputError(f"{what} holds no valid PEM certificate", path=p) from None
        certs.extend(found)
    return certs


@dataclass(frozen=True)
class KeyPair:
    private_key: Path
    public_key: Path
    fingerprint: str


def generate_key_pair(
    out_dir: str | os.PathLike[str], *, password_env: str | None = None, force: bool = False
) -> KeyPair:
    """Create ``signing.pem`` (mode 0600, optionally encrypted) and ``signing.pub`` in ``out_dir``."""
    out = Path(out_dir)
    priv, pub = out / PRIVATE_KEY_NAME, out / PUBLIC_KEY_NAME
    if not force:
        for p in (priv, pub):
            if p.exists():
                raise InputError(
                    "refusing to overwrite an existing key", path=p, hint="pick another --out or remove it"
                )
    password = password_from_env(password_env, what="--password-env")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the key directory: {exc.strerror or exc}", path=out) from None
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(priv, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, pem)
    finally:
        os.close(fd)
    public = key.public_key()
    pub.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return KeyPair(private_key=priv, public_key=pub, fingerprint=key_fingerprint(public))
