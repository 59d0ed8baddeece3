"""Sign a run's output directory: the provenance statement bundle plus the stock OpenSSF model signature.

On disk, inside ``<output_dir>/bastion/``::

    statement.json              the in-toto Statement v1 (written by the trainer plugin)
    statement.sigstore.json     Sigstore bundle: DSSE envelope whose payload is statement.json, byte for byte
    model.sig                   OpenSSF model_signing signature of the directory (ignores bastion/)

Both are made by the same signer and cover the same files: every regular file except the top-level
``bastion/`` folder (nested ``bastion`` folders, e.g. checkpoint records, are signed content). A
directory holding symbolic links, FIFOs, sockets or device files is not signed (see
:mod:`bastion.provenance.artifact`). The model signature records ``bastion`` in its ``ignore_paths``,
so the stock verifier needs nothing but the signature path (with ``tsa_url`` configured, both bundles
also carry an RFC 3161 timestamp token, see :mod:`bastion.provenance.signing.timestamp`)::

    model_signing verify key OUTPUT_DIR --signature OUTPUT_DIR/bastion/model.sig --public_key signing.pub
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.errors import BastionError, InputError, SigningError
from bastion.provenance.artifact import scan_artifact
from bastion.provenance.signing.config import SigningConfig
from bastion.provenance.signing.signer import Signer
from bastion.provenance.signing.timestamp import Timestamper
from bastion.provenance.statement import RECORD_DIR, load_statement, write_statement

STATEMENT_NAME = "statement.json"
STATEMENT_BUNDLE_NAME = "statement.sigstore.json"
MODEL_SIGNATURE_NAME = "model.sig"
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
"""Paths model_signing ignores by default; they are left out of the cross-check with the statement."""


@dataclass(frozen=True)
class SignedRun:
    """What :func:`sign_run` / :func:`sign_directory` wrote."""

    directory: Path
    backend: str
    identity: dict[str, Any]
    statement: Path | None
    statement_bundle: Path | None
    model_signature: Path | None
    files: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    timestamp_authority: str | None = None
    """URL of the TSA whose RFC 3161 tokens are in the bundles (``None``: not timestamped)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "backend": self.backend,
            "identity": self.identity,
            "statement": str(self.statement) if self.statement else None,
            "statement_bundle": str(self.statement_bundle) if self.statement_bundle else None,
            "model_signature": str(self.model_signature) if self.model_signature else None,
            "files": self.files,
            "timestamp_authority": self.timestamp_authority,
        }


def refuse_irregular_entries(directory: Path) -> None:
    """Refuse to sign a directory holding anything but folders and regular files (see
    :mod:`bastion.provenance.artifact`): model_signing signs with ``allow_symlinks: false``, the stock
    verifier then rejects links and special files anywhere, and ``bastion verify`` refuses them too."""
    listing = scan_artifact(directory)
    if listing.irregular:
        shown = "; ".join(e.describe() for e in listing.irregular[:5])
        more = f"; and {len(listing.irregular) - 5} more" if len(listing.irregular) > 5 else ""
        raise SigningError(
            f"cannot sign {directory}: it holds entries that are not regular files: {shown}{more}",
            hint="replace links with copies of the files they point to and remove pipes, sockets and device "
            "files; only regular files can be signed and verified",
        )


def oms_resources(signature_path: Path) -> dict[str, str]:
    """``{file name: sha256 hex}`` from a model_signing signature's payload (no trust check here)."""
    data = json.loads(signature_path.read_text(encoding="utf-8"))
    payload = json.loads(base64.b64decode(data["dsseEnvelope"]["payload"]))
    return {r["name"]: r["digest"] for r in payload["predicate"]["resources"] if r.get("algorithm") == "sha256"}


def _is_git_path(name: str) -> bool:
    return name.split("/", 1)[0] in GIT_PATHS


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _as_signer(config: SigningConfig | Signer | Mapping[str, Any]) -> Signer:
    if isinstance(config, Signer):
        return config
    if not isinstance(config, SigningConfig):
        config = SigningConfig.from_mapping(config)
    return config.signer()


def _timestamper(config: SigningConfig | Signer | Mapping[str, Any]) -> Timestamper | None:
    if isinstance(config, Mapping):
        config = SigningConfig.from_mapping(config)
    return config.timestamper() if isinstance(config, SigningConfig) else None


def _want_model_signature(config: SigningConfig | Signer | Mapping[str, Any]) -> bool:
    if isinstance(config, SigningConfig):
        return config.model_signature
    if isinstance(config, Mapping):
        return bool(config.get("model_signature", True))
    return True


def sign_run(output_dir: str | os.PathLike[str], config: SigningConfig | Signer | Mapping[str, Any]) -> SignedRun:
    """Sign ``<output_dir>/bastion/statement.json`` and the directory itself (see module docs).

    Before anything is written, the files the model signature covers are compared with the
    statement's subjects: a statement that no longer describes the directory is not signed.
    Nothing is left half-written: both signatures go to temporary files and are renamed at the end.
    """
    return _sign(Path(output_dir), config, require_statement=True)


def sign_directory(
    directory: str | os.PathLike[str],
    config: SigningConfig | Signer | Mapping[str, Any],
    *,
    statement: Mapping[str, Any] | None = None,
) -> SignedRun:
    """Sign a directory such as a checkpoint: always the model signature, plus the statement if there is one.

    ``statement`` (optional) is written to ``<directory>/bastion/statement.json`` first.
    """
    d = Path(directory)
    if statement is not None:
        write_statement(dict(statement), d / RECORD_DIR / STATEMENT_NAME)
    return _sign(d, config, require_statement=False)


def _sign(directory: Path, config: SigningConfig | Signer | Mapping[str, Any], *, require_statement: bool) -> SignedRun:
    if not directory.is_dir():
        raise InputError("output directory not found" if not directory.exists() else "not a directory", path=directory)
    record = directory / RECORD_DIR
    statement_path = record / STATEMENT_NAME
    payload: bytes | None = None
    subjects: dict[str, str] | None = None
    if statement_path.exists() or require_statement:
        statement = load_statement(statement_path)
        payload = statement_path.read_bytes()
        subjects = {}
        listed = statement.get("subject")
        if not isinstance(listed, list) or not listed:
            raise InputError("statement has no subject list (the files it describes)", path=statement_path)
        for i, s in enumerate(listed):
            try:
                subjects[str(s["name"])] = str(s["digest"]["sha256"])
            except (KeyError, TypeError):
                raise InputError(f"subject[{i}] lacks name or digest.sha256", path=statement_path) from None
    refuse_irregular_entries(directory)
    want_oms = _want_model_signature(config)
    signer = _as_signer(config)
    timestamper = _timestamper(config)
    record.mkdir(parents=True, exist_ok=True)
    sig_path = record / MODEL_SIGNATURE_NAME
    bundle_path = record / STATEMENT_BUNDLE_NAME
    sig_tmp = record / (MODEL_SIGNATURE_NAME + ".tmp")
    files = len(subjects or {})
    try:
        # The statement first: its errors (token, Fulcio, key) come from our own code path and are clearest.
        bundle_json = signer.sign_statement(payload) if payload is not None else None
        if bundle_json is not None and timestamper is not None:
            bundle_json = timestamper.stamp(bundle_json)
        if want_oms:
            from model_signing import hashing as ms_hashing

            hashing = ms_hashing.Config()  # type: ignore[no-untyped-call]
            # Only the top-level record folder is left out; nested ``bastion`` folders (checkpoint records)
            # are signed content like any other file.
            hashing.set_ignored_paths(paths=[RECORD_DIR], ignore_git_paths=True)
            try:
                signer.model_signing_config().set_hashing_config(hashing).sign(directory, sig_tmp)
            except BastionError:
                raise
            except Exception as exc:  # model_signing reports symlinks, bad keys, network errors in its own types
                from bastion.provenance.signing.sign_sigstore import describe_error

                raise SigningError(
                    f"model_signing could not sign {directory} (backend {signer.backend}): {describe_error(exc)}"
                ) from None
            if timestamper is not None:
                timestamper.stamp_file(sig_tmp)
            signed = oms_resources(sig_tmp)
            files = len(signed)
            if subjects is not None:
                _check_statement_matches(statement_path, subjects, signed)
        if bundle_json is not None:
            _atomic_write(bundle_path, bundle_json)
        if want_oms:
            os.replace(sig_tmp, sig_path)
    finally:
        sig_tmp.unlink(missing_ok=True)
    return SignedRun(
        directory=directory,
        backend=signer.backend,
        identity=signer.identity,
        statement=statement_path if payload is not None else None,
        statement_bundle=bundle_path if payload is not None else None,
        model_signature=sig_path if want_oms else None,
        files=files,
        timestamp_authority=timestamper.url if timestamper is not None else None,
    )


def _check_statement_matches(statement_path: Path, subjects: dict[str, str], signed: dict[str, str]) -> None:
    expected = {k: v for k, v in subjects.items() if not _is_git_path(k)}
    problems = []
    for name in sorted(expected.keys() - signed.keys()):
        problems.append(f"{name}: in the statement but no longer in the directory")
    for name in sorted(signed.keys() - expected.keys()):
        problems.append(f"{name}: in the directory but not in the statement")
    for name in sorted(expected.keys() & signed.keys()):
        if expected[name] != signed[name]:
            problems.append(f"{name}: changed since the statement was written")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise SigningError(
            f"{statement_path} does not describe the directory it sits in: {shown}",
            hint="regenerate the statement after the last write to the output directory, then sign again",
        )
