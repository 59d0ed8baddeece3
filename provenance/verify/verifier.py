"""``verify()``: everything a deploy pipeline checks before it ships a fine-tuned model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from bastion.errors import BastionError, LedgerError, LedgerVerificationError, VerificationError
from bastion.provenance.artifact import scan_artifact
from bastion.provenance.hashing import hash_listed
from bastion.provenance.ledger import verify_ledger
from bastion.provenance.predicate import PredicateError, RunPredicate
from bastion.provenance.signing.bundle import ParsedBundle, read_bundle
from bastion.provenance.signing.run import (
    GIT_PATHS,
    MODEL_SIGNATURE_NAME,
    STATEMENT_BUNDLE_NAME,
    STATEMENT_NAME,
)
from bastion.provenance.statement import ACCEPTED_PREDICATE_TYPES, PREDICATE_TYPE, RECORD_DIR, STATEMENT_TYPE
from bastion.provenance.verify.policy import DeployPolicy, load_policy
from bastion.provenance.verify.report import VerificationReport
from bastion.provenance.verify.trust import PathArg, Trust, check_bundle, trust_material

OMS_PREDICATE_TYPE = "https://model_signing/signature/v1.0"


def verify(
    artifact_dir: PathArg,
    *,
    public_key: PathArg | ec.EllipticCurvePublicKey | list[Any] | tuple[Any, ...] | None = None,
    certificate_chain: PathArg | list[PathArg] | tuple[PathArg, ...] | None = None,
    identity: str | None = None,
    issuer: str | None = None,
    policy: PathArg | DeployPolicy | None = None,
    trust_config: PathArg | None = None,
    tsa_certificate_chain: PathArg | list[PathArg] | tuple[PathArg, ...] | None = None,
    require_model_signature: bool = True,
    now: datetime | None = None,
    workers: int | None = None,
    registry: PathArg | None = None,
) -> VerificationReport:
    """Verify a signed output directory; never raises for a bad artifact, only for bad arguments.

    Trust comes from exactly what the caller passes: ``public_key`` (bundles signed by ``bastion
    keygen`` keys), ``certificate_chain`` (PEM files with the organisation's root CA, optionally
    intermediates), or ``identity`` + ``issuer`` (+ ``trust_config`` for a private Sigstore
    instance) for keyless bundles. ``tsa_certificate_chain`` (the TSA's root CA, PEM) makes the RFC
    3161 timestamps in key/certificate bundles count: each must verify, and a certificate is then
    checked at the proven signing time, so a timestamped run still verifies after it expires.
    Then: the statement on disk must equal the signed payload; every subject digest is recomputed
    (missing and extra files fail); the OpenSSF model signature must be valid, by the same signer,
    over the same files; the ledger chain must end at the signed head; and the deploy
    ``policy`` (a YAML path or :class:`DeployPolicy`) must hold (its ``lineage_contamination``
    rule is checked in the run ``registry``, a SQLite path or PostgreSQL URL).

    Raises :class:`bastion.errors.BastionError` subclasses only for unusable arguments (a missing
    key file, an invalid policy).
    """
    now = now or datetime.now(UTC)
    trust = Trust.from_args(
        now=now,
        public_key=public_key,
        certificate_chain=certificate_chain,
        identity=identity,
        issuer=issuer,
        trust_config=trust_config,
        tsa_certificate_chain=tsa_certificate_chain,
    )
    deploy_policy = policy if isinstance(policy, DeployPolicy) or policy is None else load_policy(policy)
    root = Path(artifact_dir)
    report = VerificationReport(artifact=root, trust=trust_material(trust))
    if not root.is_dir():
        if root.exists():
            report.fail(
                "record.missing",
                f"{root} is a file; expected the training output directory (the folder that holds {RECORD_DIR}/)",
                "a directory",
                "a file",
            )
        else:
            report.fail("record.missing", f"artifact directory not found: {root}", "a directory", "nothing")
        return report
    record = root / RECORD_DIR
    statement_path = record / STATEMENT_NAME
    bundle_path = record / STATEMENT_BUNDLE_NAME

    # 1. The statement bundle's signature.
    signed_payload: bytes | None = None
    signer: dict[str, Any] | None = None
    bundle: ParsedBundle | None = None
    try:
        bundle = read_bundle(bundle_path)
    except VerificationError as exc:
        check = "record.missing" if not bundle_path.exists() else "bundle.invalid"
        report.fail(check, exc.message, f"a Sigstore bundle at {RECORD_DIR}/{STATEMENT_BUNDLE_NAME}", None)
    if bundle is not None and _refuse_unused_trust(report, bundle, trust):
        bundle = None
    if bundle is not None:
        signer = check_bundle(bundle, trust, report, what=f"{RECORD_DIR}/{STATEMENT_BUNDLE_NAME}")
        if signer is not None:
            signed_payload = bundle.payload
            report.signer = signer
            report.passed.append("signature")
            if report.timestamps:
                report.passed.append("timestamp")

    # 2. statement.json must be the signed payload, byte for byte.
    on_disk: bytes | None = None
    try:
        on_disk = statement_path.read_bytes()
    except FileNotFoundError:
        report.fail("record.missing", f"{RECORD_DIR}/{STATEMENT_NAME} not found", "the run statement", None)
    except OSError as exc:
        report.fail("record.missing", f"cannot read {RECORD_DIR}/{STATEMENT_NAME}: {exc.strerror or exc}")
    if signed_payload is not None and on_disk is not None:
        if on_disk == signed_payload:
            report.passed.append("statement")
        else:
            _explain_statement_difference(report, signed_payload, on_disk)
    # Later checks trust only signed content; without a valid signature they run on the file for diagnostics.
    statement = _parse_statement(report, signed_payload if signed_payload is not None else on_disk)
    if statement is None:
        return report
    report.statement = statement

    # 3. Files on disk vs the signed subjects.
    subjects = _subjects(report, statement)
    before = len(report.failures)
    try:
        listing = scan_artifact(root)
        digest = hash_listed(root, listing.files, workers=workers)
    except BastionError as exc:
        report.fail("subject.unreadable", exc.message)
        return report
    except OSError as exc:  # a file vanished or became unreadable between listing and hashing
        report.fail("subject.unreadable", f"{exc.filename or root}: {exc.strerror or exc}")
        return report
    # Only the top-level record folder is outside the signature; every other entry must be a signed
    # regular file. Links and special files are refused by name (the stock verifier refuses them too).
    for entry in listing.irregular:
        check = "subject.symlink" if "symbolic link" in entry.kind else "subject.special"
        report.fail(
            check,
            f"{entry.path}: not a regular file; only regular files are signed and verified",
            _expected_entry(entry.path),
            entry.kind,
        )
    actual = {f.name: f.sha256 for f in digest.files}
    report.files = len(actual)
    for name in sorted(subjects.keys() - actual.keys()):
        report.fail("subject.missing", f"{name}: signed file is missing", f"sha256:{subjects[name]}", "no such file")
    for name in sorted(actual.keys() - subjects.keys()):
        report.fail(
            "subject.extra", f"{name}: file is not covered by the signature", "no such file", f"sha256:{actual[name]}"
        )
    for name in sorted(subjects.keys() & actual.keys()):
        if subjects[name] != actual[name]:
            report.fail(
                "subject.modified",
                f"{name}: content differs from the signed digest",
                f"sha256:{subjects[name]}",
                f"sha256:{actual[name]}",
            )
    if len(report.failures) == before:
        report.passed.append("subjects")

    # 4. The stock OpenSSF model signature: valid, same signer, same files.
    _check_model_signature(report, trust, record / MODEL_SIGNATURE_NAME, subjects, signer, require_model_signature)

    # 5. The ledger ends where the signed statement says it does.
    _check_ledger(report, root, _parse_predicate(report, statement))

    # 6. Deploy policy.
    if deploy_policy is not None:
        before = len(report.failures)
        for check, message, expected, found in deploy_policy.evaluate(statement, signer, now):
            report.fail(check, message, expected, found)
        if deploy_policy.lineage_contamination == "none" and statement is not None:
            from bastion.provenance.verify.lineage_rule import check_lineage_contamination

            for check, message, expected, found in check_lineage_contamination(statement, registry):
                report.fail(check, message, expected, found)
        if len(report.failures) == before:
            report.passed.append("policy")
    return report


def _refuse_unused_trust(report: VerificationReport, bundle: ParsedBundle, trust: Trust) -> bool:
    """Trust arguments that do not apply to how the run was signed are refused, not silently ignored:
    someone who passes ``--trust-config`` or ``--issuer`` believes it constrains the check."""
    unused = []
    if trust.trust_config is not None and bundle.kind != "sigstore":
        unused.append("--trust-config (a Sigstore trust root)")
    if trust.issuer is not None and bundle.kind == "key":
        unused.append("--issuer")
    if trust.tsa is not None and bundle.kind == "sigstore":
        unused.append("--tsa-certificate-chain (keyless bundles are checked against the Sigstore trust root)")
    if not unused:
        return False
    how = {
        "key": "a bare key (trust it with --key)",
        "certificate": "a certificate (trust it with --certificate-chain)",
    }
    report.fail(
        "trust.unused",
        f"{RECORD_DIR}/{STATEMENT_BUNDLE_NAME} is signed with {how.get(bundle.kind, bundle.kind)}; "
        f"{' and '.join(unused)} would be ignored: drop it, or check that this is the artifact you meant",
        f"trust arguments for a {bundle.kind}-signed run",
        ", ".join(u.split(" ")[0] for u in unused),
    )
    return True


def _expected_entry(path: str) -> str:
    if path == RECORD_DIR:
        return "the record folder itself, not a link"
    if path.startswith(f"{RECORD_DIR}/"):
        return "a regular record file"
    return "a signed regular file"


def _explain_statement_difference(report: VerificationReport, signed: bytes, on_disk: bytes) -> None:
    try:
        a, b = json.loads(signed), json.loads(on_disk)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        report.fail("statement.mismatch", f"{RECORD_DIR}/{STATEMENT_NAME} is not the signed statement (not JSON)")
        return
    pa = a.get("predicate") if isinstance(a, dict) else None
    pb = b.get("predicate") if isinstance(b, dict) else None
    run_a = pa.get("run_id") if isinstance(pa, dict) else None
    run_b = pb.get("run_id") if isinstance(pb, dict) else None
    if run_a != run_b:
        report.fail(
            "statement.mismatch",
            "the signature bundle belongs to another run",
            f"run_id {run_b}",
            f"bundle signs run_id {run_a}",
        )
        return
    try:
        diffs = _diff_paths(a, b)
    except RecursionError:
        diffs = []
    shown = ", ".join(diffs[:5]) + (f" and {len(diffs) - 5} more" if len(diffs) > 5 else "")
    report.fail(
        "statement.mismatch",
        f"{RECORD_DIR}/{STATEMENT_NAME} was edited after signing"
        + (f" (changed: {shown})" if diffs else " (formatting)"),
        "the signed statement",
        "an edited copy",
    )


def _diff_paths(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_paths(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += _diff_paths(x, y, f"{prefix}[{i}]")
        return out
    return [] if a == b else [prefix or "(whole statement)"]


def _parse_statement(report: VerificationReport, raw: bytes | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        st = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        report.fail("statement.invalid", "the statement is not JSON")
        return None
    if not isinstance(st, dict) or st.get("_type") != STATEMENT_TYPE:
        report.fail(
            "statement.invalid",
            "not an in-toto Statement v1",
            STATEMENT_TYPE,
            str(st.get("_type") if isinstance(st, dict) else type(st).__name__),
        )
        return None
    if st.get("predicateType") not in ACCEPTED_PREDICATE_TYPES:  # the current name, or a legacy one
        report.fail(
            "statement.invalid", "not a Bastion training-run statement", PREDICATE_TYPE, str(st.get("predicateType"))
        )
        return None
    return st


def _subjects(report: VerificationReport, statement: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or not subjects:
        report.fail("statement.invalid", "the statement has no subject list", "a non-empty list of files", None)
        return out
    for i, s in enumerate(subjects):
        try:
            out[str(s["name"])] = str(s["digest"]["sha256"]).lower()
        except (KeyError, TypeError):
            report.fail("statement.invalid", f"subject[{i}] lacks name or digest.sha256")
    return out


def _check_model_signature(
    report: VerificationReport,
    trust: Trust,
    path: Path,
    subjects: dict[str, str],
    signer: dict[str, Any] | None,
    required: bool,
) -> None:
    what = f"{RECORD_DIR}/{MODEL_SIGNATURE_NAME}"
    if not path.exists():
        if required:
            report.fail(
                "model_signature.missing",
                f"{what} not found: stock `model_signing verify` cannot check this artifact",
                "an OpenSSF model signature",
                None,
            )
        return
    try:
        bundle = read_bundle(path)
    except VerificationError as exc:
        report.fail("model_signature.invalid", exc.message)
        return
    before = len(report.failures)
    oms_signer = check_bundle(bundle, trust, report, what=what)
    if oms_signer is None:
        for f in report.failures[before:]:
            object.__setattr__(f, "check", f"model_signature.{f.check}")
        return
    if signer is not None and oms_signer != signer:
        report.fail(
            "model_signature.signer",
            "model signature and statement were signed by different signers",
            str(signer),
            str(oms_signer),
        )
        return
    try:
        payload = json.loads(bundle.payload)
        if payload.get("predicateType") != OMS_PREDICATE_TYPE:
            raise ValueError(f"predicate type {payload.get('predicateType')}")
        resources = {
            r["name"]: str(r["digest"]).lower()
            for r in payload["predicate"]["resources"]
            if r.get("algorithm") == "sha256"
        }
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        report.fail("model_signature.invalid", f"{what}: not an OpenSSF model signature payload ({exc})")
        return
    expected = {k: v for k, v in subjects.items() if k.split("/", 1)[0] not in GIT_PATHS}
    if resources != expected:
        changed = sorted(k for k in expected.keys() | resources.keys() if expected.get(k) != resources.get(k))
        report.fail(
            "model_signature.mismatch",
            f"{what} covers different files than the statement: {', '.join(changed[:5])}",
            f"the statement's {len(expected)} file(s)",
            f"{len(resources)} file(s)",
        )
        return
    report.passed.append("model_signature")


def _parse_predicate(report: VerificationReport, statement: dict[str, Any]) -> RunPredicate | None:
    """The statement's typed run predicate; a malformed one fails ``statement.invalid`` naming the field."""
    try:
        return RunPredicate.parse(statement.get("predicate"))
    except PredicateError as exc:
        report.fail("statement.invalid", f"the run predicate is malformed: {exc.message}", "a v1 run predicate", None)
        return None


def _check_ledger(report: VerificationReport, root: Path, pred: RunPredicate | None) -> None:
    if pred is None:  # malformed: already failed as statement.invalid, naming the field
        return
    led = pred.ledger
    if led.head is None:
        report.fail("ledger.missing", "the statement records no ledger head", "predicate.ledger.head", None)
        return
    rel = led.path
    try:
        path = (root / rel).resolve()
    except (OSError, ValueError):
        report.fail("ledger.missing", "the statement's ledger path is not a usable path", "a relative path", rel[:80])
        return
    if not path.is_relative_to(root.resolve()):
        report.fail(
            "ledger.missing",
            "the statement's ledger path points outside the artifact",
            "a path inside the artifact",
            rel,
        )
        return
    entries = led.entries
    try:
        verify_ledger(path, expected_head=led.head, expected_entries=entries)
    except LedgerVerificationError as exc:
        report.fail(
            "ledger.broken",
            exc.message.replace(str(path), rel),
            f"an intact chain of {entries} entries ending at {led.head[:16]}…",
            f"broken at line {exc.line}",
        )
        return
    except LedgerError as exc:
        report.fail("ledger.missing", exc.message.replace(str(path), rel), rel, None)
        return
    report.passed.append("ledger")
