"""``bastion registry`` (index verified run records) and ``bastion lineage`` (query them).

Exit status: 0 when everything asked for was done, 1 when a record was refused or a proof does not
verify, 2 on unusable arguments (a Bastion error, printed as one line).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from bastion.cli.trust_options import trust_options
from bastion.errors import InputError

DB_HELP = (
    "Registry: a SQLite file path or a postgresql:// URL "
    "(default: $BASTION_REGISTRY, else ~/.local/share/bastion/registry.sqlite3)."
)


def _db_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--db", "db", metavar="PATH|URL", help=DB_HELP)(fn)


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON (for pipelines).")(fn)


def _open(db: str | None) -> Any:
    from bastion.provenance.registry import open_registry

    return open_registry(db)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


def _short(digest: str | None) -> str:
    return "-" if not digest else f"{digest[:16]}…"


# ---------------------------------------------------------------------------- bastion registry


@click.group("registry")
def registry() -> None:
    """Index verified run records (SQLite by default, PostgreSQL by URL) for lineage queries."""


@registry.command("add")
@click.argument("paths", nargs=-1, required=True)
@_db_option
@trust_options
@click.option("--no-model-signature", is_flag=True, help="Do not require the OpenSSF model signature.")
@click.option(
    "--flag-unverified",
    is_flag=True,
    help="Index records that fail verification, marked unverified with their failed checks (default: refuse them).",
)
@click.option(
    "--data",
    "data",
    multiple=True,
    metavar="PATH",
    help="Data files (JSON/JSONL; directories and globs too) whose record digests to index for record queries; "
    "each is checked against the Merkle root the run records sign.",
)
@_json_option
def add(
    paths: tuple[str, ...],
    db: str | None,
    public_keys: tuple[Path, ...],
    chain: tuple[Path, ...],
    identity: str | None,
    issuer: str | None,
    trust_config: Path | None,
    tsa_chain: tuple[Path, ...],
    no_model_signature: bool,
    flag_unverified: bool,
    data: tuple[str, ...],
    as_json: bool,
) -> None:
    """Verify and index the run records under PATHS (run directories, folders of runs, globs).

    Every record is verified as `bastion verify` does (signature, statement, files, model signature,
    ledger) with the trust arguments given (--key / --certificate-chain / --identity + --issuer).
    A record that fails is refused (exit 1) unless --flag-unverified. Adding a record again changes
    nothing. The trust material that verified each record is pinned with it (`bastion registry verify`).
    """
    from bastion.provenance.registry import Trust, add_paths, index_data_files

    trust = Trust(
        public_key=public_keys,
        certificate_chain=chain,
        identity=identity,
        issuer=issuer,
        trust_config=trust_config,
        require_model_signature=not no_model_signature,
        tsa_certificate_chain=tsa_chain,
    )
    if trust.empty:
        raise click.UsageError("give the trust to verify against: --key, --certificate-chain, or --identity/--issuer")
    with _open(db) as reg:
        results = add_paths(reg, paths, trust, flag_unverified=flag_unverified)
        data_results = index_data_files(reg, data) if data else []
    refused = [r for r in results if r.status == "refused"] + [d for d in data_results if d.status == "refused"]
    if as_json:
        _echo_json({"records": [r.as_dict() for r in results], "data": [d.as_dict() for d in data_results]})
    else:
        for r in results:
            if r.status == "refused":
                click.echo(f"REFUSED {r.path}")
                for p in r.problems:
                    click.echo(f"  {p}")
            else:
                click.echo(f"{r.status.upper():9} {r.path}: {r.kind} of run {r.run_id} ({_short(r.artifact_digest)})")
                for p in r.problems if r.status == "flagged" else []:
                    click.echo(f"  unverified: {p}")
        for d in data_results:
            line = f"DATA {d.status}: {d.path}"
            if d.records is not None:
                line += f" ({d.records} records, {_short(d.sha256)})"
            click.echo(line + "".join(f"; {p}" for p in d.problems))
        if refused:
            click.echo(f"{len(refused)} refused: nothing was indexed for them; fix them or pass --flag-unverified")
    if refused:
        sys.exit(1)


@registry.command("add-data")
@click.argument("paths", nargs=-1, required=True)
@_db_option
@_json_option
def add_data(paths: tuple[str, ...], db: str | None, as_json: bool) -> None:
    """Index the record digests of data files (JSON/JSONL) that indexed runs used.

    A file is hashed; when its SHA-256 is a dataset an indexed run names (or the parent of a carved
    split), its record digests are indexed if they rebuild the signed Merkle root. Unused files are
    reported and skipped.
    """
    from bastion.provenance.registry import index_data_files

    with _open(db) as reg:
        results = index_data_files(reg, paths)
    if as_json:
        _echo_json([d.as_dict() for d in results])
    else:
        for d in results:
            click.echo(f"{d.status}: {d.path} ({_short(d.sha256)})" + "".join(f"; {p}" for p in d.problems))
    if any(d.status == "refused" for d in results):
        sys.exit(1)


@registry.command("verify")
@click.argument("run_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Verify every indexed record.")
@_db_option
@_json_option
def verify_command(run_id: str | None, everything: bool, db: str | None, as_json: bool) -> None:
    """Verify the indexed records of RUN_ID (or --all) again, against the trust material pinned at indexing.

    Only the pinned keys, CA chains and TSA roots count, not what is configured today; the run
    directories must still hold what was signed. Exit 1 if any record fails.
    """
    from bastion.provenance.registry import verify_pinned

    if (run_id is None) == (not everything):
        raise click.UsageError("name one RUN_ID, or pass --all")
    with _open(db) as reg:
        checks = verify_pinned(reg, run_id)
    failed = [c for c in checks if not c.ok]
    if as_json:
        _echo_json([c.as_dict() for c in checks])
    else:
        for c in checks:
            click.echo(f"{'OK  ' if c.ok else 'FAIL'} {c.run_id}  {c.kind:10} {c.path}")
            for p in c.problems:
                click.echo(f"  {p}")
        click.echo(f"{len(checks) - len(failed)} of {len(checks)} record(s) verify against their pinned trust")
    if failed:
        sys.exit(1)


@registry.command("list")
@_db_option
@_json_option
def list_command(db: str | None, as_json: bool) -> None:
    """List the indexed records."""
    from bastion.provenance.registry.lineage import list_artifacts

    with _open(db) as reg:
        arts = list_artifacts(reg)
    if as_json:
        _echo_json(arts)
        return
    for a in arts:
        flag = "" if a["verified"] else "  UNVERIFIED"
        click.echo(f"{a['run_id']}  {a['kind']:10} {_short(a['artifact_digest'])}  {a['path']}{flag}")


# ---------------------------------------------------------------------------- bastion lineage


@click.group("lineage")
def lineage() -> None:
    """Lineage queries over the registry: datasets, models, records (with proofs), diffs, contamination."""


def _runs_table(arts: list[dict[str, Any]], extra: Callable[[dict[str, Any]], str] | str = "") -> None:
    for a in arts:
        flag = "" if a["verified"] else " UNVERIFIED"
        note = extra if isinstance(extra, str) else extra(a)
        click.echo(f"  {a['run_id']}  {a['kind']:10} {_short(a['artifact_digest'])}{flag}  {a['path']}{note}")


@lineage.command("dataset")
@click.argument("digest")
@_db_option
@_json_option
def dataset_command(digest: str, db: str | None, as_json: bool) -> None:
    """Runs and signed models that used the dataset DIGEST (file digest, Merkle root, or carved-split parent)."""
    from bastion.provenance.registry import lineage as q

    with _open(db) as reg:
        answer = q.by_dataset(reg, digest)
    if as_json:
        _echo_json(answer)
        return
    click.echo(f"dataset {digest}: used by {len(answer['runs'])} run(s)")
    _runs_table(answer["used_by"], lambda a: f"  as {a['dataset']['role']} ({a['dataset']['name']})")


@lineage.command("model")
@click.argument("digest")
@_db_option
@_json_option
def model_command(digest: str, db: str | None, as_json: bool) -> None:
    """Everything that went into the model DIGEST (artifact manifest digest or a file's SHA-256)."""
    from bastion.provenance.registry import lineage as q

    with _open(db) as reg:
        answer = q.by_model(reg, digest)
    if as_json:
        _echo_json(answer)
        return
    if not answer["matches"]:
        click.echo(f"no indexed artifact has the digest {digest}")
        sys.exit(1)
    click.echo("artifacts (the model and its ancestors):")
    _runs_table(answer["artifacts"])
    for e in answer["edges"]:
        click.echo(f"  {e['child'][:12]} <-{e['relation']}- {e['parent'][:12]}")
    click.echo("datasets:")
    for d in answer["datasets"]:
        click.echo(f"  {d['role']:10} {_short(d['sha256'])} {d['name']} (runs {', '.join(d['runs'])})")
    for x in answer["external_inputs"]:
        click.echo(f"  input not in the registry: {x['relation']} {_short(x['target'])} {x['name'] or ''}")


@lineage.command("record")
@click.argument("spec", required=False, metavar="[FILE:LINE]")
@click.option("--record-json", help="The record itself, as JSON text.")
@click.option("--digest", help="The record's canonical digest (SHA-256 of its RFC 8785 JSON).")
@click.option("--proofs", type=click.Path(dir_okay=False, path_type=Path), help="Also write the answer to this file.")
@_db_option
@_json_option
def record_command(
    spec: str | None, record_json: str | None, digest: str | None, proofs: Path | None, db: str | None, as_json: bool
) -> None:
    """Which signed models were trained on a record, each with a Merkle inclusion proof against the signed root."""
    from bastion.provenance.registry import lineage as q

    if sum(x is not None for x in (spec, record_json, digest)) != 1:
        raise click.UsageError("name the record once: FILE:LINE, --record-json JSON or --digest HEX")
    rd = q.record_digest_of(spec, record_json=record_json, digest=digest)
    with _open(db) as reg:
        answer = q.by_record(reg, rd)
    if proofs is not None:
        proofs.write_text(json.dumps(answer, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if as_json:
        _echo_json(answer)
        return
    trained = [r for r in answer["runs"] if r["trained"]]
    click.echo(f"record {rd}: in the training data of {len(trained)} indexed record(s)")
    for r in answer["runs"]:
        ok = "proof ok" if r["proof_matches_signed_root"] else "PROOF DOES NOT MATCH THE SIGNED ROOT"
        note = f"  {r['dataset']['role']} {r['dataset']['name']} #{r['proof']['index']} {ok}"
        _runs_table([r], note)
    if answer["derived"]:
        click.echo("derived from those:")
        _runs_table(answer["derived"])
    if answer["not_indexed"]:
        click.echo(
            f"not covered: {len(answer['not_indexed'])} dataset(s) used by indexed runs have no indexed record "
            "digests (bastion registry add-data FILE):"
        )
        for n in answer["not_indexed"]:
            click.echo(f"  {_short(n['sha256'])} {n['name']}")


@lineage.command("diff")
@click.argument("old")
@click.argument("new")
@_db_option
@_json_option
def diff_command(old: str, new: str, db: str | None, as_json: bool) -> None:
    """Records added and removed between the datasets OLD and NEW (by record digest; both indexed)."""
    from bastion.provenance.registry import lineage as q

    with _open(db) as reg:
        answer = q.diff(reg, old, new)
    if as_json:
        _echo_json(answer)
        return
    click.echo(
        f"{answer['old_records']} -> {answer['new_records']} records: {len(answer['added'])} added, "
        f"{len(answer['removed'])} removed, {answer['unchanged']} unchanged"
    )
    for d in answer["added"]:
        click.echo(f"+ {d}")
    for d in answer["removed"]:
        click.echo(f"- {d}")


@lineage.command("contamination")
@click.argument("digest")
@_db_option
@_json_option
def contamination_command(digest: str, db: str | None, as_json: bool) -> None:
    """Eval records of the model DIGEST's run found in the training data of any of its ancestors (exit 1 if any)."""
    from bastion.provenance.registry import lineage as q

    with _open(db) as reg:
        answer = q.contamination(reg, digest)
    if as_json:
        _echo_json(answer)
    else:
        n = len(answer["contaminated_records"])
        click.echo(f"{n} eval record(s) occur in the training data of {len(answer['ancestors'])} ancestor(s)")
        for f in answer["findings"]:
            a = f["ancestor"]
            click.echo(
                f"  {f['record_digest']}  eval {f['eval_dataset']['name']} <- {a['run_id']} {a['kind']} "
                f"{f['train_dataset']['role']} {f['train_dataset']['name']}"
            )
        for x in answer["not_checked"]:
            click.echo(f"  not checked (records not indexed): {x['role']} {_short(x['sha256'])} {x['name']}")
    if answer["contaminated_records"]:
        sys.exit(1)


@lineage.command("verify-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("spec", required=False, metavar="[FILE:LINE]")
@click.option("--record-json", help="The record the proof must be for, as JSON text.")
@click.option(
    "--statement", type=click.Path(path_type=Path), help="Also require the proof's root in this run's record."
)
def verify_proof(proof_file: Path, spec: str | None, record_json: str | None, statement: Path | None) -> None:
    """Check the inclusion proofs in PROOF_FILE (the output of `lineage record --json`, or one proof object).

    With FILE:LINE or --record-json, each proof must be for that record. With --statement (a run's
    output directory or its statement.json), the proven root must be a dataset root that statement
    signs; check the statement's signature with `bastion verify`.
    """
    from bastion.provenance.registry import lineage as q
    from bastion.provenance.registry.proofs import check_proof

    try:
        doc = json.loads(proof_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the proof file ({exc})", path=proof_file) from None
    proofs = [r["proof"] for r in doc.get("runs", [])] if isinstance(doc, dict) and "runs" in doc else [doc]
    if not proofs:
        raise InputError("the file holds no proofs (the record is in no indexed dataset)", path=proof_file)
    want = q.record_digest_of(spec, record_json=record_json) if spec or record_json else None
    roots: set[Any] | None = None
    if statement is not None:
        from bastion.provenance.statement import load_statement

        path = statement / "bastion" / "statement.json" if statement.is_dir() else statement
        pred = load_statement(path).get("predicate") or {}
        roots = {d.get("merkle_root") for d in pred.get("datasets") or [] if isinstance(d, dict)}
    bad = 0
    for p in proofs:
        ok = check_proof(p, want)
        where = f"record {str(p.get('record_digest'))[:16]}… at {p.get('index')} of {p.get('size')}"
        if ok and roots is not None and p.get("root") not in roots:
            click.echo(f"FAIL {where}: the root {str(p.get('root'))[:16]}… is not one the statement signs")
            bad += 1
        elif ok:
            click.echo(f"OK   {where}: included under root {str(p.get('root'))[:16]}…")
        else:
            click.echo(f"FAIL {where}: the proof does not verify" + (" for this record" if want else ""))
            bad += 1
    if bad:
        sys.exit(1)
