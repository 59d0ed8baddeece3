"""``bastion inspect``: a readable summary of a run record.

Reads ``<output_dir>/bastion/statement.json`` (the output directory, its ``bastion/`` folder or the
statement file itself may be given), checks the ledger against the head the statement records, and
lists the signature files present. It does not re-hash the outputs or check signatures: that is
``bastion verify``'s job. Exit status: 0 when the ledger verifies, 1 when it does not (or is missing).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bastion.errors import BastionError, LedgerError, LedgerVerificationError
from bastion.provenance.ledger import verify_ledger
from bastion.provenance.predicate import PredicateError, RunPredicate
from bastion.provenance.redaction import redact_secrets
from bastion.provenance.statement import RECORD_DIR, STATEMENT_NAME, load_statement, locate_record

SIGNATURE_SUFFIXES = (".sigstore.json", ".sigstore", ".sig", ".bundle", ".dsse.json")


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _sha(value: Any) -> str | None:
    d = _obj(_obj(value).get("digest")).get("sha256")
    return d if isinstance(d, str) else None


def _ledger_status(run_dir: Path, led: dict[str, Any]) -> dict[str, Any]:
    raw_path, raw_head, raw_entries = led.get("path"), led.get("head"), led.get("entries")
    rel = raw_path if isinstance(raw_path, str) else f"{RECORD_DIR}/ledger.jsonl"
    head = raw_head if isinstance(raw_head, str) else None
    entries = raw_entries if isinstance(raw_entries, int) and not isinstance(raw_entries, bool) else None
    out: dict[str, Any] = {"path": rel, "head": head, "entries": entries}
    if Path(rel).is_absolute():
        return {**out, "verified": False, "problem": "the statement's ledger path is absolute; not followed"}
    path = run_dir / rel
    if head is None:
        out["problem"] = "the statement records no ledger head"
    try:
        found = verify_ledger(path, expected_head=head, expected_entries=entries)
    except LedgerVerificationError as exc:
        return {**out, "verified": False, "line": exc.line, "problem": exc.message.replace(str(path), rel)}
    except LedgerError as exc:
        return {**out, "verified": False, "problem": exc.message.replace(str(path), rel)}
    out["verified"] = head is not None
    out["found"] = {"entries": found.entries, "head": found.head}
    return out


_FULCIO_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
_FULCIO_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"


def _der_utf8(raw: bytes) -> str | None:
    """The text of a DER UTF8String (Fulcio's OIDC-issuer extension, v2)."""
    if len(raw) < 2 or raw[0] != 0x0C:
        return None
    length, pos = raw[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, pos = int.from_bytes(raw[2 : 2 + n], "big"), 2 + n
    return raw[pos : pos + length].decode("utf-8", errors="replace")


def _oidc_issuer(cert: Any) -> str | None:
    from cryptography import x509

    for oid, decode in ((_FULCIO_ISSUER_V2, _der_utf8), (_FULCIO_ISSUER_V1, lambda b: b.decode("utf-8", "replace"))):
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid))
        except x509.ExtensionNotFound:
            continue
        value = getattr(ext.value, "value", None)
        if isinstance(value, bytes):
            return decode(value)
    return None


def describe_signer(bundle_path: Path, public_keys: tuple[Path, ...] = ()) -> dict[str, Any] | None:
    """Who signed a bundle, as the bundle itself says (NOT a trust decision: that is ``bastion verify``).

    Key: the key id (model_signing's hint) and, when one of ``public_keys`` matches it, the key's
    fingerprint as policies name it. Certificate: subject, SANs, issuer. Sigstore: the identity (SAN) and
    the OIDC issuer from the Fulcio certificate.
    """
    from bastion.provenance.signing.bundle import key_fingerprint, key_hint, read_bundle
    from bastion.provenance.signing.keys import load_public_key
    from bastion.provenance.signing.sign_certificate import certificate_identity

    if not bundle_path.is_file():
        return None
    try:
        bundle = read_bundle(bundle_path)
    except BastionError as exc:
        return {"type": "unreadable", "problem": exc.message}
    if bundle.kind == "key":
        info: dict[str, Any] = {"type": "key", "key_hint": bundle.key_hint, "fingerprint": None}
        for path in public_keys:
            key = load_public_key(path)
            if key_hint(key) == bundle.key_hint:
                info["fingerprint"] = key_fingerprint(key)
        return info
    if bundle.kind == "certificate":
        ident = certificate_identity(bundle.chain[0])
        return {k: ident[k] for k in ("type", "subject", "san", "issuer", "fingerprint", "not_after")}
    try:  # the Fulcio leaf, read straight from the bundle (no transparency-log checks: not a trust decision)
        import base64

        from cryptography import x509

        material = json.loads(bundle.raw)["verificationMaterial"]
        raw = (material.get("certificate") or material["x509CertificateChain"]["certificates"][0])["rawBytes"]
        cert = x509.load_der_x509_certificate(base64.b64decode(raw))
    except (KeyError, IndexError, TypeError, ValueError) as exc:  # malformed: say so, do not crash the summary
        return {"type": "sigstore", "problem": f"cannot read the signing certificate ({type(exc).__name__})"}
    ident = certificate_identity(cert)
    return {"type": "sigstore", "identity": ", ".join(ident["san"]) or None, "issuer": _oidc_issuer(cert)}


def _config_values(value: Any) -> tuple[Any, list[str]]:
    """The recorded config, credentials withheld (again: records written before redaction was complete
    may still carry some), and every path the record or this pass withheld."""
    red = redact_secrets(value)
    return red.value, list(red.paths)


def summarize(run_dir: Path, statement_path: Path, *, public_keys: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The facts ``inspect`` shows, as one JSON-ready dictionary."""
    st = load_statement(statement_path)
    try:
        typed: RunPredicate | None = RunPredicate.parse(st.get("predicate"))
        predicate_problem = None
    except PredicateError as exc:  # shown, and what can be read of it is still summarized below
        typed, predicate_problem = None, exc.message
    pred = typed.to_json() if typed is not None else _obj(st.get("predicate"))
    subjects = [s for s in _list(st.get("subject")) if isinstance(s, dict)]

    def artifact(value: Any) -> dict[str, Any] | None:
        v = _obj(value)
        if not v:
            return None
        files = v.get("files")
        return {
            "path_name": v.get("path_name"),
            "sha256": _sha(v),
            "files": len(files) if isinstance(files, list) else None,
        }

    datasets = []
    for d in _list(pred.get("datasets")):
        d = _obj(d)
        datasets.append(
            {
                "name": d.get("name"),
                "role": d.get("role"),
                "format": d.get("format"),
                "records": d.get("records"),
                "merkle_root": d.get("merkle_root"),
                "sha256": _sha(d),
            }
        )
    env = _obj(pred.get("environment"))
    packages = _obj(env.get("packages"))
    record_dir = statement_path.parent
    signatures = sorted(
        p.name
        for p in record_dir.iterdir()
        if p.is_file() and p.name != STATEMENT_NAME and p.name.endswith(SIGNATURE_SUFFIXES)
    )
    metrics = _obj(pred.get("metrics"))
    config = _obj(pred.get("config"))
    config_value, config_redacted = _config_values(config.get("value"))
    return {
        "run_dir": str(run_dir),
        "statement": str(statement_path),
        "predicate_type": st.get("predicateType"),
        "run_id": pred.get("run_id"),
        "framework": pred.get("framework"),
        "bastion_version": pred.get("bastion_version"),
        "started_at": pred.get("started_at"),
        "finished_at": pred.get("finished_at"),
        "base_model": artifact(pred.get("base_model")),
        "tokenizer": artifact(pred.get("tokenizer")),
        "datasets": datasets,
        "overlap_train_eval_records": _obj(pred.get("overlap")).get("train_eval_records"),
        "overlap_near_duplicate": _obj(pred.get("overlap")).get("near_duplicate"),
        "config_sha256": _sha(pred.get("config")),
        "config_source": config.get("source"),
        "config": config_value,
        "config_redacted": sorted(set(config_redacted) | {str(p) for p in _list(config.get("redacted"))}),
        "signer": describe_signer(record_dir / "statement.sigstore.json", public_keys),
        "environment": {
            "python": env.get("python"),
            "platform": env.get("platform"),
            "cuda_available": env.get("cuda_available"),
            "packages": packages,
        },
        "metrics": _obj(metrics.get("final")) if "final" in metrics else metrics,
        "global_step": metrics.get("global_step"),
        "ledger": _ledger_status(run_dir, _obj(pred.get("ledger"))),
        "subjects": [
            {
                "name": s.get("name"),
                "sha256": _sha(s),
                "present": isinstance(s.get("name"), str) and (run_dir / s["name"]).is_file(),
            }
            for s in subjects
        ],
        "signatures": signatures,
        "warnings": [str(w) for w in _list(pred.get("warnings"))],
        "predicate_problem": predicate_problem,
        "previous_run": None if typed is None or typed.previous_run is None else typed.previous_run.to_json(),
    }


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _signer_text(signer: dict[str, Any]) -> str:
    kind = signer.get("type")
    if "problem" in signer:
        return f"{kind}: {signer['problem']}"
    if kind == "key":
        fp = signer.get("fingerprint")
        return f"key {fp}" if fp else f"key id {signer.get('key_hint')} (pass --key PUBLIC_KEY for its fingerprint)"
    if kind == "certificate":
        san = ", ".join(signer.get("san") or []) or "-"
        return f"certificate {signer.get('subject')} (SAN {san}; issuer {signer.get('issuer')})"
    return f"Sigstore identity {signer.get('identity')} (issuer {signer.get('issuer')})"


def _render(info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True, highlight=False)
    if not console.is_terminal:
        console = Console(soft_wrap=True, width=100_000, highlight=False)

    def line(key: str, value: Any) -> None:
        console.print(f"[bold]{key}:[/bold] ", end="")
        console.print(_fmt(value), markup=False)

    line("run", info["run_dir"])
    if info["predicate_problem"]:
        line("predicate", f"MALFORMED: {info['predicate_problem']}")
    line("run id", info["run_id"])
    line("framework", info["framework"])
    line("started / finished", f"{_fmt(info['started_at'])} / {_fmt(info['finished_at'])}")
    for key in ("base_model", "tokenizer"):
        a = info[key]
        label = key.replace("_", " ")
        if a is None:
            line(label, "not recorded")
        else:
            line(label, f"{_fmt(a['path_name'])}  sha256 {_fmt(a['sha256'])}  ({_fmt(a['files'])} files)")
    signer = info["signer"]
    if signer is None:
        line("signer", "none (unsigned run record)")
    else:
        line("signer", _signer_text(signer) + "  (as the bundle says; `bastion verify` checks it)")
    line("config sha256", info["config_sha256"])
    config = info["config"]
    if isinstance(config, dict) and config:
        line(
            "config",
            f"from {_fmt(info['config_source'])}"
            + (
                "" if not info["config_redacted"] else f"; credentials withheld at {', '.join(info['config_redacted'])}"
            ),
        )
        for key in sorted(config):
            value = config[key]
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            console.print(f"  {key}: ", end="")
            console.print(text, markup=False)
    elif config is not None:
        line("config", json.dumps(config, default=str))
    env = info["environment"]
    pk = env["packages"]
    versions = ", ".join(f"{k} {v}" for k, v in sorted(pk.items()) if k in ("torch", "transformers", "peft", "trl"))
    cuda = env["cuda_available"]
    cuda_text = "" if cuda is None else ("; CUDA available" if cuda else "; no CUDA")
    line("environment", f"Python {_fmt(env['python'])} on {_fmt(env['platform'])}{cuda_text}; {versions or '-'}")

    if info["datasets"]:
        t = Table(title="datasets", title_justify="left", show_edge=False)
        for col in ("name", "role", "format", "records", "merkle root", "sha256"):
            t.add_column(col, no_wrap=True)
        for d in info["datasets"]:
            t.add_row(*(_fmt(d[k]) for k in ("name", "role", "format", "records", "merkle_root", "sha256")))
        console.print(t, markup=False)
    else:
        line("datasets", "none recorded")
    line("train/eval overlap (records)", info["overlap_train_eval_records"])
    near = info["overlap_near_duplicate"]
    if isinstance(near, dict):
        line(
            "near-duplicate overlap",
            f"{near.get('eval_records')} of {near.get('eval_total')} eval records "
            f"(MinHash Jaccard >= {near.get('threshold')})",
        )

    metrics = info["metrics"]
    line("metrics", ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(metrics.items())) or "none")
    if info["global_step"] is not None:
        line("global step", info["global_step"])

    led = info["ledger"]
    if led.get("verified"):
        status = f"verifies against the recorded head ({led['entries']} entries, head {led['head']})"
    else:
        status = f"DOES NOT VERIFY: {led.get('problem')}"
    line("ledger", f"{led['path']}: {status}")

    subjects = info["subjects"]
    missing = [s["name"] for s in subjects if not s["present"]]
    line("subjects", f"{len(subjects)} files" + (f" ({len(missing)} missing on disk)" if missing else ""))
    t = Table(show_edge=False)
    t.add_column("file", no_wrap=True)
    t.add_column("sha256", no_wrap=True)
    t.add_column("on disk", no_wrap=True)
    for s in subjects:
        t.add_row(_fmt(s["name"]), _fmt(s["sha256"]), "yes" if s["present"] else "MISSING")
    if subjects:
        console.print(t, markup=False)
    line("signatures", ", ".join(info["signatures"]) or "none (unsigned run record)")
    prev = info["previous_run"]
    if prev is not None:
        line(
            "previous run here",
            f"{_fmt(prev['run_id'])} ({prev['status']}); its record is {prev['ledger_file']}, "
            f"{len(prev['files'])} file(s) it left are not this run's outputs",
        )
    for w in info["warnings"]:
        line("warning", w)


@click.command("inspect")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option(
    "--key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Public key (PEM) to name a key signer by its fingerprint (repeatable); no trust decision is made.",
)
def inspect_command(run_dir: Path, as_json: bool, public_keys: tuple[Path, ...]) -> None:
    """Summarize the run record of RUN_DIR (an output directory, its bastion/ folder, or statement.json)."""
    root, statement_path = locate_record(run_dir)
    info = summarize(root, statement_path, public_keys=public_keys)
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True, default=str))
    else:
        _render(info)
    if not info["ledger"].get("verified") or info["predicate_problem"]:
        sys.exit(1)
