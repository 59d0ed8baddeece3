"""``bastion llamafactory train``: ``llamafactory-cli train`` with a Bastion run record."""

from __future__ import annotations

from pathlib import Path

import click

from bastion.extras import require
from bastion.plugins.llamafactory.settings import FSYNC_MODES

_TRAIN_HELP = """Train with LLaMA-Factory, exactly as `llamafactory-cli train ARGS...`, and record provenance.

ARGS are LLaMA-Factory's: a YAML/JSON config followed by KEY=VALUE overrides, or --key value flags.
Bastion's settings come from a `bastion:` section of the same YAML (removed before LLaMA-Factory reads
it; keys: strict, signing, sign_checkpoints, fsync) or from the options below, which go BEFORE the
config file and take precedence. The record is written to <output_dir>/bastion/ after LLaMA-Factory
has saved the model.

\b
Examples:
  bastion llamafactory train sft.yaml
  bastion llamafactory train --strict --sign-key keys/signing.pem dpo.yaml learning_rate=5e-6

Exit status: 0 on success, 1 if training fails (as llamafactory-cli), 2 for a Bastion input or
configuration error found before training starts. LLaMA-Factory's own options: llamafactory-cli train -h.
"""


@click.group(name="llamafactory")
def llamafactory() -> None:
    """Run LLaMA-Factory with provenance (ledger, statement, signature)."""


@llamafactory.command(
    "train",
    help=_TRAIN_HELP,
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": ["-h", "--help"],
    },
)
@click.option("--strict/--no-strict", default=None, help="Stop before the first step on any provenance problem.")
@click.option(
    "--sign-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Sign the record with this PEM private key (bastion keygen); same as bastion.signing.backend=key.",
)
@click.option("--sign-key-password-env", metavar="NAME", help="Environment variable holding the key's password.")
@click.option("--sign-checkpoints/--no-sign-checkpoints", default=None, help="Also sign every saved checkpoint.")
@click.option("--fsync", type=click.Choice(FSYNC_MODES), default=None, help="Ledger durability (default: interval).")
@click.option("--torchrun/--no-torchrun", default=True, hidden=True)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def train(
    strict: bool | None,
    sign_key: Path | None,
    sign_key_password_env: str | None,
    sign_checkpoints: bool | None,
    fsync: str | None,
    torchrun: bool,
    args: tuple[str, ...],
) -> None:
    if not args:
        raise click.UsageError("missing the training config: bastion llamafactory train CONFIG.yaml [KEY=VALUE ...]")
    if sign_key_password_env and sign_key is None:
        raise click.UsageError("--sign-key-password-env needs --sign-key")
    signing = None
    if sign_key is not None:
        signing = {"backend": "key", "private_key": str(sign_key)}
        if sign_key_password_env:
            signing["password_env"] = sign_key_password_env

    require("llamafactory", feature="bastion llamafactory train")
    from bastion.plugins.llamafactory.runner import needs_torchrun, prepare, run_exp
    from bastion.plugins.llamafactory.runner import torchrun as launch_torchrun

    if torchrun and needs_torchrun():
        # Check inputs and signing once, here, so that a typo is one clear error (exit 2), not one per rank.
        prepare(list(args), strict=strict, signing=signing, sign_checkpoints=sign_checkpoints, fsync=fsync)
        worker = []
        if strict is not None:
            worker.append("--strict" if strict else "--no-strict")
        if sign_key is not None:
            worker += ["--sign-key", str(sign_key.absolute())]
        if sign_key_password_env:
            worker += ["--sign-key-password-env", sign_key_password_env]
        if sign_checkpoints is not None:
            worker.append("--sign-checkpoints" if sign_checkpoints else "--no-sign-checkpoints")
        if fsync is not None:
            worker += ["--fsync", fsync]
        raise SystemExit(launch_torchrun([*worker, *args]))

    statement = run_exp(list(args), strict=strict, signing=signing, sign_checkpoints=sign_checkpoints, fsync=fsync)
    if statement is not None:
        signed = any(p.name.endswith((".sigstore.json", ".sig")) for p in statement.parent.iterdir())
        click.echo(f"bastion: run record written to {statement.parent}{' (signed)' if signed else ''}", err=True)
