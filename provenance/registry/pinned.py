"""Trust pinned per record: what verified a run when it was indexed, and checking it again against exactly that.

At ``bastion registry add`` the registry stores, next to each verified record, the trust material that
verified it (the public key, or the CA chain, and the TSA roots whose timestamps proved the signing
time, each as PEM with its SHA-256 fingerprint). ``bastion registry verify`` re-verifies the indexed run
directories against that pinned material only: an audit years later does not depend on which keys or
CAs are configured that day, and a key rotated out since still checks the runs it signed.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bastion.errors import BastionError
from bastion.provenance.registry.store import Registry, RegistryError
from bastion.provenance.statement import RECORD_DIR

STATEMENT = f"{RECORD_DIR}/statement.json"
PUBLIC_SIGSTORE = "public Sigstore (production)"


def pin_material(report: Any, *, require_model_signature: bool) -> dict[str, Any]:
    """The part of ``report.trust`` that verified the record (``report.trust_used`` names it), with PEMs.

    Keys and CA certificates not used by any of the record's bundles are left out; TSA roots are kept
    when a timestamp proved the signing time.
    """
    trust: dict[str, Any] = report.trust
    used: dict[str, dict[str, Any]] = report.trust_used
    keys = {u.get("public_key") for u in used.values()}
    certs = {fp for u in used.values() for fp in u.get("certificate_chain") or []}
    stamped = bool(report.timestamps)
    sigstore = (report.signer or {}).get("type") == "sigstore"
    return {
        "public_keys": [k for k in trust.get("public_keys") or [] if k.get("fingerprint") in keys],
        "ca_roots": [c for c in trust.get("ca_roots") or [] if c.get("fingerprint") in certs],
        "ca_intermediates": [c for c in trust.get("ca_intermediates") or [] if c.get("fingerprint") in certs],
        "tsa_roots": list(trust.get("tsa_roots") or []) if stamped else [],
        "tsa_intermediates": list(trust.get("tsa_intermediates") or []) if stamped else [],
        "sigstore": trust.get("sigstore") if sigstore else None,
        "identity": trust.get("identity"),
        "issuer": trust.get("issuer"),
        "require_model_signature": require_model_signature,
        "used": used,
        "timestamps": report.timestamps,
    }


def fingerprints(material: dict[str, Any]) -> list[str]:
    """The fingerprints of the pinned keys and certificates (for people and JSON reports)."""
    out: list[str] = []
    for kind in ("public_keys", "ca_roots", "ca_intermediates", "tsa_roots", "tsa_intermediates"):
        out.extend(str(item.get("fingerprint")) for item in material.get(kind) or [])
    return out


@dataclass
class PinnedCheck:
    """One indexed record verified again against its pinned trust material."""

    record_id: str
    run_id: str
    kind: str
    path: str
    problems: list[str] = field(default_factory=list)
    pinned: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "run_id": self.run_id,
            "kind": self.kind,
            "path": self.path,
            "ok": self.ok,
            "problems": list(self.problems),
            "pinned": list(self.pinned),
        }


def _write_pems(folder: Path, name: str, items: list[dict[str, Any]]) -> list[Path]:
    paths = []
    for i, item in enumerate(items):
        fp = str(item.get("fingerprint") or "").removeprefix("sha256:")[:16]
        p = folder / f"pinned-{name}-{i}-{fp}.pem"
        p.write_text(str(item["pem"]), encoding="ascii")
        paths.append(p)
    return paths


def _sigstore_config(material: dict[str, Any]) -> tuple[Path | None, str | None]:
    """The pinned Sigstore trust root (a file whose digest must still match), or a problem."""
    sig = material.get("sigstore")
    if not isinstance(sig, dict) or sig.get("trust_config") in (None, PUBLIC_SIGSTORE):
        return None, None
    path = Path(str(sig["trust_config"]))
    try:
        got = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        return None, f"the pinned Sigstore trust root {path} cannot be read ({exc.strerror or exc})"
    if got != sig.get("sha256"):
        return None, (
            f"the Sigstore trust root at {path} changed since the record was indexed "
            f"(pinned {sig.get('sha256')}, now {got}): restore the pinned file"
        )
    return path, None


@dataclass(frozen=True)
class PinnedFiles:
    """Pinned trust material written out as PEM files, in the form ``bastion verify`` takes it."""

    public_keys: tuple[Path, ...]
    certificate_chain: tuple[Path, ...]
    tsa_certificate_chain: tuple[Path, ...]
    identity: str | None
    issuer: str | None
    trust_config: Path | None
    require_model_signature: bool


@contextlib.contextmanager
def pinned_files(material: dict[str, Any]) -> Iterator[PinnedFiles]:
    """The material as files in a temporary folder (removed on exit); :class:`RegistryError` when a pinned
    Sigstore trust root is no longer the pinned file."""
    trust_config, problem = _sigstore_config(material)
    if problem:
        raise RegistryError(problem)
    with tempfile.TemporaryDirectory(prefix="bastion-pinned-") as tmp:
        folder = Path(tmp)
        ca = [*(material.get("ca_roots") or []), *(material.get("ca_intermediates") or [])]
        tsa = [*(material.get("tsa_roots") or []), *(material.get("tsa_intermediates") or [])]
        yield PinnedFiles(
            public_keys=tuple(_write_pems(folder, "key", material.get("public_keys") or [])),
            certificate_chain=tuple(_write_pems(folder, "ca", ca)),
            tsa_certificate_chain=tuple(_write_pems(folder, "tsa", tsa)),
            identity=material.get("identity"),
            issuer=material.get("issuer"),
            trust_config=trust_config,
            require_model_signature=bool(material.get("require_model_signature", True)),
        )


def check_record(path: Path, record_id: str, material: dict[str, Any], *, now: datetime | None = None) -> list[str]:
    """Problems found verifying the run directory ``path`` against ``material`` alone (empty: it verifies)."""
    from bastion.provenance.verify import verify

    try:
        with pinned_files(material) as files:
            report = verify(
                path,
                public_key=list(files.public_keys) or None,
                certificate_chain=list(files.certificate_chain) or None,
                tsa_certificate_chain=list(files.tsa_certificate_chain) or None,
                identity=files.identity,
                issuer=files.issuer,
                trust_config=files.trust_config,
                require_model_signature=files.require_model_signature,
                now=now,
            )
    except BastionError as exc:
        return [f"the pinned trust material cannot be used: {exc.message}"]
    problems = report.lines()
    try:
        on_disk = hashlib.sha256((path / STATEMENT).read_bytes()).hexdigest()
    except OSError:
        on_disk = None
    if on_disk is not None and on_disk != record_id:
        problems.append(
            "record.changed: the statement on disk is not the one indexed (the run was signed again since); "
            "`bastion registry add` it to index the new record"
        )
    return problems


def verify_pinned(registry: Registry, run_id: str | None, *, now: datetime | None = None) -> list[PinnedCheck]:
    """Re-verify the indexed records of ``run_id`` (every record when ``None``) against their pinned trust."""
    query = "SELECT record_id, run_id, kind, path FROM reg_artifacts"
    params: tuple[str, ...] = ()
    if run_id is not None:
        query += " WHERE run_id = ?"
        params = (run_id,)
    rows = registry.rows(query + " ORDER BY run_id, kind, path", params)
    if run_id is not None and not rows:
        raise RegistryError(
            f"no indexed record of run {run_id} in {registry.where}",
            hint="`bastion registry list` shows the indexed runs",
        )
    checks: list[PinnedCheck] = []
    for record_id, rid, kind, path in rows:
        check = PinnedCheck(str(record_id), str(rid), str(kind), str(path))
        material = registry.pinned_trust(check.record_id)
        if material is None:
            check.problems.append(
                "no trust material is pinned for this record (indexed unverified, or before trust was pinned): "
                "`bastion registry add` it with its trust arguments to pin it"
            )
        else:
            check.pinned = fingerprints(material)
            check.problems = check_record(Path(check.path), check.record_id, material, now=now)
        checks.append(check)
    return checks


__all__ = [
    "PinnedCheck",
    "PinnedFiles",
    "check_record",
    "fingerprints",
    "pin_material",
    "pinned_files",
    "verify_pinned",
]
