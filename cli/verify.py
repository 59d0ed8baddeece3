"""``bastion verify``: the deploy gate. Exit 0 only when every check holds, 1 otherwise, 2 on bad arguments."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bastion.cli.trust_options import trust_options
from bastion.provenance.verify import verify as verify_artifact


@click.command("verify")
@click.argument("artifact_dir", type=click.Path(path_type=Path))
@trust_options
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path), help="Deploy policy YAML.")
@click.option(
    "--registry",
    metavar="PATH|URL",
    help="Run registry (SQLite file or postgresql:// URL) for the policy's lineage_contamination rule.",
)
@click.option(
    "--no-model-signature",
    is_flag=True,
    help="Do not require the OpenSSF model signature (bastion/model.sig).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for pipelines).")
def verify(
    artifact_dir: Path,
    public_keys: tuple[Path, ...],
    chain: tuple[Path, ...],
    tsa_chain: tuple[Path, ...],
    identity: str | None,
    issuer: str | None,
    trust_config: Path | None,
    policy: Path | None,
    registry: str | None,
    no_model_signature: bool,
    as_json: bool,
) -> None:
    """Verify ARTIFACT_DIR against its signed provenance and an optional deploy policy.

    Checks the signature against the trusted key/CA/identity, recomputes every file digest
    (extra or missing files fail), checks the OpenSSF model signature, the ledger chain and
    that statement.json is exactly what was signed, then applies the policy. Prints one line
    per failed check.

    \b
    Deploy policy (YAML):
      allowed_signers: [{key: "sha256:..."}, {certificate: {san: ...}}, {sigstore: {identity: ..., issuer: ...}}]
      allowed_base_models: [{sha256: ...}]
      datasets: {required: [{sha256: ...}], forbidden: [{sha256: ...}]}
      train_eval_overlap: none
      near_duplicates: {max_share: 0.01, max_threshold: 0.8}
      max_age: 30d
      lineage_contamination: none   (checked in the run registry given with --registry)
    """
    if registry is not None and policy is None:
        raise click.UsageError("--registry is read by a deploy policy's lineage_contamination rule: give --policy")
    report = verify_artifact(
        artifact_dir,
        public_key=list(public_keys) or None,
        certificate_chain=list(chain) or None,
        identity=identity,
        issuer=issuer,
        trust_config=trust_config,
        tsa_certificate_chain=list(tsa_chain) or None,
        policy=policy,
        require_model_signature=not no_model_signature,
        registry=registry,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    elif report.ok:
        signer = report.signer or {}
        who = signer.get("fingerprint") or signer.get("subject") or signer.get("identity")
        click.echo(f"OK {artifact_dir}: {report.files} files, signed by {signer.get('type')} {who}")
        for what, stamp in report.timestamps.items():
            click.echo(f"  signing time: {stamp['time']} (RFC 3161, {stamp['tsa']}) for {what}")
        click.echo("  checks: " + ", ".join(report.passed))
    else:
        for line in report.lines():
            click.echo(f"FAIL {line}")
    if not report.ok:
        sys.exit(1)
