"""``bastion gateway migrate``: bring the gateway's state store schema up to date before a rollout.

``bastion gateway`` stays the server command (cli/gateway.py); this module puts it in a group whose
subcommands are recognised by their name as the first argument, so ``bastion gateway --policy ...``
runs the server exactly as before and ``bastion gateway migrate --state URL`` runs a migration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from bastion.errors import ConfigError


@click.command("migrate")
@click.option(
    "--state",
    "location",
    default=None,
    help="postgresql://USER@HOST:PORT/DB, sqlite:///DIR or a state dir. Default: gateway.state_url, "
    "else gateway.state_dir, of --upstreams.",
)
@click.option(
    "--upstreams",
    "upstreams_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Gateway config to read gateway.state_url / gateway.state_dir from.",
)
@click.option(
    "--drop-held-uploads",
    "drop_held",
    is_flag=True,
    default=False,
    help="Also delete every held upload and part (needed once to change the held-part key; "
    "stop every replica first: uploads in progress are lost).",
)
def migrate_command(location: str | None, upstreams_file: Path | None, drop_held: bool) -> None:
    """Create or upgrade the state store's schema (idempotent; safe while replicas run or start).

    Replicas also migrate at start-up; run this before rolling out a new version so that no replica
    starts against an older schema. Concurrent runs wait for each other (an advisory lock).
    """
    from bastion.gateway.state import describe_location, drop_held_uploads, migrate_state

    if location is None:
        if upstreams_file is None:
            raise ConfigError("say which state store to migrate: --state URL_OR_DIR or --upstreams CONFIG")
        from bastion.gateway.config import load_config

        location = str(load_config(upstreams_file).gateway.state_location)
    before, after = migrate_state(location)
    where = describe_location(location)
    if before == after:
        click.echo(f"state store {where}: schema already at version {after}")
    else:
        click.echo(f"state store {where}: schema version {before} -> {after}")
    if drop_held:
        uploads, parts = drop_held_uploads(location)
        click.echo(f"state store {where}: dropped {uploads} held uploads and {parts} held parts")


class GatewayGroup(click.Group):
    """The server command with subcommands: a first argument naming one runs it, anything else runs the server."""

    def __init__(self, serve: click.Command) -> None:
        super().__init__(name=serve.name, help=serve.help, short_help=serve.short_help)
        self.serve = serve
        self.add_command(migrate_command)

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        if args and (args[0] in self.commands or args == ["--help"] or args == ["-h"]):
            return super().make_context(info_name, args, parent, **extra)
        return self.serve.make_context(info_name, args, parent, **extra)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self.serve.format_help(ctx, formatter)
        self.format_commands(ctx, formatter)


def _gateway() -> GatewayGroup:
    from bastion.cli.gateway import gateway as serve

    return GatewayGroup(serve)


gateway = _gateway()
