"""``bastion report``: the audit export of one run (HTML page, JSON, CycloneDX ML-BOM).

Every output is built in memory first, then each file is written to a temporary name beside it and
moved into place, so a failure leaves no partial file. Exit status: 0 when the run verifies, 1 when
the export was written but verification failed (the page says which checks), 2 for bad arguments.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

from bastion.cli.trust_options import trust_options
from bastion.errors import InputError
from bastion.provenance.report import TrustArgs, build_mlbom, build_report, evidence_from_run_dir, render_html


def _write(path: Path, text: str, what: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise InputError(f"the folder for {what} does not exist", path=directory, hint="create it first")
    if path.is_dir():
        raise InputError(f"{what} path is a directory; give a file name", path=path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write {what}: {exc.strerror or exc}", path=directory) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a report is read by others, like any file written here
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise InputError(f"cannot write {what}: {exc.strerror or exc}", path=path) from None


@click.command("report")
@click.argument("run_dir", type=click.Path(path_type=Path), required=False)
@click.option(
    "--model",
    "model_digest",
    metavar="DIGEST",
    help="Report on the indexed run that produced this artifact (manifest digest, statement or file SHA-256), "
    "from the run registry, verified against the trust pinned when it was indexed.",
)
@click.option(
    "--db",
    metavar="PATH|URL",
    help="Run registry for --model: a SQLite file or postgresql:// URL (default: $BASTION_REGISTRY, else "
    "~/.local/share/bastion/registry.sqlite3).",
)
@click.option("--out", "html_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the HTML page here.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, path_type=Path), help="Write the report as JSON.")
@click.option(
    "--mlbom", "bom_out", type=click.Path(dir_okay=False, path_type=Path), help="Write a CycloneDX 1.6 ML-BOM."
)
@trust_options
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path), help="Deploy policy YAML to check too.")
@click.option("--no-model-signature", is_flag=True, help="Do not require the OpenSSF model signature.")
def report(
    run_dir: Path | None,
    model_digest: str | None,
    db: str | None,
    html_out: Path | None,
    json_out: Path | None,
    bom_out: Path | None,
    public_keys: tuple[Path, ...],
    chain: tuple[Path, ...],
    identity: str | None,
    issuer: str | None,
    trust_config: Path | None,
    tsa_chain: tuple[Path, ...],
    policy: Path | None,
    no_model_signature: bool,
) -> None:
    """Export an audit report of RUN_DIR: --out report.html, --json report.json, --mlbom bom.json.

    Verifies the run with the same checks and trust options as `bastion verify`, then writes one
    self-contained HTML page (loss/metric curves from the ledger, inputs and datasets with roles and
    digests, train/eval overlap, signature and verification results, environment, warnings, lineage,
    and an EU AI Act Art. 10 / Art. 12 / Annex IV evidence map), the same content as JSON, and/or a
    CycloneDX ML-BOM of the model. Exit 0 when the run verifies, 1 when it does not (the files are
    still written and show the failed checks), 2 for bad arguments.

    With --model DIGEST instead of RUN_DIR, the run is found in the registry (--db); without trust
    options it is verified against the trust material pinned when it was indexed, and the lineage
    graph shows its parents and derived artifacts from the registry.
    """
    if (run_dir is None) == (model_digest is None):
        raise click.UsageError("name the run once: RUN_DIR, or --model DIGEST (with --db)")
    if db is not None and model_digest is None:
        raise click.UsageError("--db only applies with --model DIGEST")
    if html_out is None and json_out is None and bom_out is None:
        raise click.UsageError("nothing to write: give --out report.html, --json report.json and/or --mlbom bom.json")
    trust = TrustArgs(
        public_keys=public_keys,
        certificate_chain=chain,
        identity=identity,
        issuer=issuer,
        trust_config=trust_config,
        policy=policy,
        require_model_signature=not no_model_signature,
        tsa_certificate_chain=tsa_chain,
    )
    if model_digest is not None:
        from bastion.provenance.registry import open_registry
        from bastion.provenance.report.registry import evidence_from_registry

        with open_registry(db) as reg:
            evidence = evidence_from_registry(reg, model_digest, trust)
    else:
        assert run_dir is not None
        evidence = evidence_from_run_dir(run_dir, trust)
    content = build_report(evidence)
    outputs: list[tuple[Path, str, str]] = []
    if html_out is not None:
        outputs.append((html_out, render_html(content), "the HTML report"))
    if json_out is not None:
        outputs.append((json_out, json.dumps(content, indent=2, sort_keys=True) + "\n", "the JSON report"))
    if bom_out is not None:
        outputs.append((bom_out, build_mlbom(content), "the ML-BOM"))
    for path, text, what in outputs:
        _write(path, text, what)
    v = content["verification"]
    written = ", ".join(str(p) for p, _, _ in outputs)
    if v["ok"]:
        click.echo(f"OK run {content['run']['run_id']} verifies; wrote {written}")
    else:
        click.echo(
            f"FAILED run {content['run']['run_id']} does not verify; wrote {written} (failed checks listed there)"
        )
        for f in v["failures"]:
            click.echo(f"  FAIL {f['check']}: {f['message']}")
        sys.exit(1)
