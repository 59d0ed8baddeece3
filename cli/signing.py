"""``bastion keygen`` and ``bastion sign``."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import click

from bastion.provenance.signing import SigningConfig, generate_key_pair, sign_directory, sign_run
from bastion.provenance.signing.run import MODEL_SIGNATURE_NAME, STATEMENT_NAME
from bastion.provenance.statement import RECORD_DIR


@click.command("keygen")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("keys"),
    show_default=True,
    help="Directory for signing.pem (private, mode 0600) and signing.pub.",
)
@click.option(
    "--password-env",
    metavar="NAME",
    help="Encrypt the private key with the password held in environment variable NAME (never a literal password).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing key pair.")
def keygen(out_dir: Path, password_env: str | None, force: bool) -> None:
    """Create an ECDSA P-256 key pair for offline signing (backend 'key').

    The private key is never printed. Give verifiers signing.pub, and put the fingerprint
    in the deploy policy's allowed_signers.
    """
    pair = generate_key_pair(out_dir, password_env=password_env, force=force)
    click.echo(f"private key: {pair.private_key} (mode 0600{', encrypted' if password_env else ''}; keep it secret)")
    click.echo(f"public key:  {pair.public_key}")
    click.echo(f"fingerprint: {pair.fingerprint}")
    click.echo("deploy policy entry:")
    click.echo(f'  allowed_signers:\n    - key: "{pair.fingerprint}"')


def _stock_command(backend: str, directory: Path, public_key: Path | None, trust_config: Path | None = None) -> str:
    sig = directory / RECORD_DIR / MODEL_SIGNATURE_NAME
    base = f"model_signing verify {backend} {shlex.quote(str(directory))} --signature {shlex.quote(str(sig))}"
    if backend == "key":
        pub = public_key if public_key is not None else Path("PUBLIC_KEY.pub")
        return f"{base} --public_key {shlex.quote(str(pub))}"
    if backend == "certificate":
        return f"{base} --certificate_chain ROOT_CA.pem"
    tc = f" --trust_config {shlex.quote(str(trust_config))}" if trust_config else ""
    return f"{base}{tc} --identity IDENTITY --identity_provider ISSUER"


@click.command("sign")
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--key", "private_key", type=click.Path(dir_okay=False, path_type=Path), help="PEM EC private key.")
@click.option("--password-env", metavar="NAME", help="Environment variable holding the private key's password.")
@click.option(
    "--certificate",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Signing certificate (PEM) issued for --key by your CA: selects backend 'certificate'.",
)
@click.option(
    "--chain",
    "chain",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Intermediate CA certificate(s) to ship in the bundle (repeatable).",
)
@click.option(
    "--tsa-url",
    metavar="URL",
    help="RFC 3161 endpoint of your time-stamping authority: the signatures get a timestamp token.",
)
@click.option(
    "--tsa-certificate-chain",
    "tsa_chain",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The TSA's root CA (and intermediates), PEM, to check its replies (repeatable; needed with --tsa-url).",
)
@click.option("--sigstore", "use_sigstore", is_flag=True, help="Keyless signing with an OIDC identity (Sigstore).")
@click.option(
    "--trust-config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sigstore ClientTrustConfig JSON of a private Sigstore deployment.",
)
@click.option("--staging", is_flag=True, help="Use the public Sigstore staging instance (testing only).")
@click.option("--identity-token-env", metavar="NAME", help="Environment variable holding an OIDC identity token.")
@click.option("--oidc-issuer", metavar="URL", help="OIDC issuer for the interactive flow (Sigstore).")
@click.option("--no-model-signature", is_flag=True, help="Only sign the statement, not the OpenSSF model signature.")
@click.option(
    "--allow-no-statement",
    is_flag=True,
    help=f"Sign a directory without {RECORD_DIR}/{STATEMENT_NAME} (e.g. a checkpoint): model signature only.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sign(
    output_dir: Path,
    private_key: Path | None,
    password_env: str | None,
    certificate: Path | None,
    chain: tuple[Path, ...],
    tsa_url: str | None,
    tsa_chain: tuple[Path, ...],
    use_sigstore: bool,
    trust_config: Path | None,
    staging: bool,
    identity_token_env: str | None,
    oidc_issuer: str | None,
    no_model_signature: bool,
    allow_no_statement: bool,
    as_json: bool,
) -> None:
    """Sign OUTPUT_DIR: its bastion/statement.json (Sigstore bundle) and the directory (OpenSSF model signature).

    \b
    bastion sign out/ --key keys/signing.pem
    bastion sign out/ --key leaf.key --certificate leaf.pem --chain intermediate.pem
    bastion sign out/ --key leaf.key --certificate leaf.pem --tsa-url URL --tsa-certificate-chain tsa-root.pem
    bastion sign out/ --sigstore [--trust-config private-sigstore.json] [--identity-token-env ID_TOKEN]
    """
    if use_sigstore:
        if private_key or certificate or chain:
            raise click.UsageError("--sigstore is keyless: do not combine it with --key/--certificate/--chain")
        mapping: dict[str, object] = {"backend": "sigstore", "staging": staging}
        if trust_config:
            mapping["trust_config"] = str(trust_config)
        if identity_token_env:
            mapping["identity_token_env"] = identity_token_env
        if oidc_issuer:
            mapping["oidc_issuer"] = oidc_issuer
    else:
        if private_key is None:
            raise click.UsageError("choose a backend: --key PEM [--certificate PEM --chain PEM] or --sigstore")
        if trust_config or staging or identity_token_env or oidc_issuer:
            raise click.UsageError("--trust-config/--staging/--identity-token-env/--oidc-issuer need --sigstore")
        mapping = {"backend": "certificate" if certificate else "key", "private_key": str(private_key)}
        if password_env:
            mapping["password_env"] = password_env
        if certificate:
            mapping["certificate"] = str(certificate)
            mapping["certificate_chain"] = [str(c) for c in chain]
        elif chain:
            raise click.UsageError("--chain needs --certificate")
    mapping["model_signature"] = not no_model_signature
    if tsa_url:
        mapping["tsa_url"] = tsa_url
    if tsa_chain:
        mapping["tsa_certificate_chain"] = [str(c) for c in tsa_chain]
    config = SigningConfig.from_mapping(mapping, source="bastion sign options")
    statement = output_dir / RECORD_DIR / STATEMENT_NAME
    if allow_no_statement and not statement.exists():
        signed = sign_directory(output_dir, config)
    else:
        signed = sign_run(output_dir, config)
    if as_json:
        click.echo(json.dumps(signed.as_dict(), indent=2))
        return
    ident = signed.identity
    who = ident.get("fingerprint") if ident.get("type") == "key" else ident.get("subject") or ident.get("identity")
    click.echo(f"signed {output_dir} ({signed.files} files) with backend '{signed.backend}': {who}")
    if signed.statement_bundle:
        click.echo(f"  statement bundle: {signed.statement_bundle}")
    if signed.timestamp_authority:
        click.echo(f"  timestamped by:   {signed.timestamp_authority} (RFC 3161)")
    if signed.model_signature:
        click.echo(f"  model signature:  {signed.model_signature}")
        pub = private_key.with_suffix(".pub") if private_key is not None else None
        if pub is not None and not pub.exists():
            pub = None
        click.echo("  stock check:      " + _stock_command(signed.backend, output_dir, pub, trust_config))
