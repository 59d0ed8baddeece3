"""The ``bastion`` command.

Subcommands live in their own modules and are imported only when invoked, so ``bastion verify`` in
a deploy pipeline does not pay for importing torch, and ``bastion --help`` stays instant.
Errors derived from :class:`bastion.BastionError` are printed as one clear message (no traceback)
and exit with status 2; verification failures use status 1. A command whose optional extra is not
installed says which one to install (:mod:`bastion.extras`); ``--help`` lists the extras.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from bastion import __version__, extras
from bastion.errors import BastionError
from bastion.extras import missing_extra

# name -> ("module:attribute", one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("bastion.cli.demo:demo", "Run a tiny LoRA fine-tune on CPU with provenance, on embedded defaults."),
    "hash": ("bastion.cli.hashing:hash_command", "Hash a file, dataset or model directory."),
    "ledger": ("bastion.cli.ledger:ledger", "Inspect and verify hash-chained ledgers."),
    "audit": ("bastion.cli.audit:audit", "Verify the gateway's segmented audit log."),
    "inspect": ("bastion.cli.inspect:inspect_command", "Summarize a run record (output dir or its bastion/ folder)."),
    "keygen": ("bastion.cli.signing:keygen", "Create an ECDSA P-256 signing key pair for offline signing."),
    "sign": ("bastion.cli.signing:sign", "Sign a run's output directory and statement."),
    "verify": ("bastion.cli.verify:verify", "Verify a model artifact against its signed provenance."),
    "report": ("bastion.cli.report:report", "Export an audit report of a run (HTML, JSON, CycloneDX ML-BOM)."),
    "policy": ("bastion.cli.policy:policy", "Check and test gateway/scan policy files."),
    "scan": ("bastion.cli.scan:scan", "Scan a dataset offline against a policy (pre-flight check)."),
    "gateway": ("bastion.cli.gateway_state:gateway", "Run the egress gateway in front of fine-tune APIs."),
    "llamafactory": ("bastion.cli.llamafactory:llamafactory", "Run LLaMA-Factory with provenance."),
    "registry": ("bastion.cli.registry:registry", "Index verified run records for lineage queries."),
    "lineage": ("bastion.cli.registry:lineage", "Lineage of datasets, models and records across indexed runs."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        target, help_text = COMMANDS[cmd_name]
        module_name, attr = target.split(":")
        if ctx.resilient_parsing or "--help" in sys.argv[1:2]:
            # Listing: don't import heavy modules just to print one line of help.
            return click.Command(cmd_name, help=help_text, short_help=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            error = missing_extra(exc, feature=f"bastion {cmd_name}")
            if error is None:
                raise
            raise error from None
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # From the table, importing no command module (``bastion -h`` as cheap as ``--help``).
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_text) for name, (_, help_text) in sorted(COMMANDS.items())])
        rows = [(e.name, f"{'missing  ' if missing else 'installed'}  {e.purpose}") for e, missing in extras.status()]
        with formatter.section(f"Extras (pip install '{extras.DISTRIBUTION}[NAME]')"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bastion")
def cli() -> None:
    """Bastion: provenance, signing and egress control for regulated LLM fine-tuning."""


def main(argv: list[str] | None = None) -> Any:
    """Entry point: runs the CLI, turning Bastion errors into one clear message and exit status 2."""
    try:
        return cli.main(args=argv, prog_name="bastion", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except BastionError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ModuleNotFoundError as exc:
        # A command that imports an extra's module only when it runs: the same one line as above.
        error = missing_extra(exc, feature=_feature(sys.argv[1:] if argv is None else argv))
        if error is None:
            raise
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        sys.exit(130)


def _feature(argv: list[str]) -> str:
    """``bastion SUBCOMMAND`` as the user typed it, for error messages."""
    return " ".join(["bastion", *[a for a in argv if not a.startswith("-")][:1]])


if __name__ == "__main__":  # pragma: no cover
    main()
