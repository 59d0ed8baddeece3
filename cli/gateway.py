"""``bastion gateway``: run the egress gateway in front of fine-tune APIs."""

from __future__ import annotations

from pathlib import Path

import click

from bastion.errors import ConfigError
from bastion.extras import require


@click.command("gateway")
@click.option(
    "--policy",
    "policy_source",
    required=True,
    help="Policy file (YAML) or a bundled pack as pack:NAME.",
)
@click.option(
    "--upstreams",
    "upstreams_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Upstream map + gateway settings (YAML). Default: OpenAI at https://api.openai.com, passthrough auth.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8088, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Override gateway.state_dir (audit log and admitted-file map).",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    show_default=True,
    help="uvicorn access log (method, path, status; never headers or bodies).",
)
def gateway(
    policy_source: str,
    upstreams_file: Path | None,
    host: str,
    port: int,
    state_dir: Path | None,
    access_log: bool,
) -> None:
    """Run the egress gateway.

    Clients point their SDK at http://HOST:PORT/<upstream>/v1 (e.g. base_url=http://127.0.0.1:8088/openai/v1).
    Training uploads are scanned against the policy and forwarded only when admitted; every decision is
    appended to the hash-chained audit log in the state dir; Prometheus metrics are on /metrics.
    SIGTERM/SIGINT stop accepting, give in-flight requests gateway.shutdown_grace_s, then cancel them.
    """
    require("gateway", feature="bastion gateway")
    import sqlite3

    from bastion.gateway.app import create_gateway
    from bastion.gateway.config import DEFAULT_CONFIG, config_from_mapping, load_config
    from bastion.gateway.preflight import bind_socket, check_state, check_upstream_transport
    from bastion.gateway.serve import serve
    from bastion.policies import load_policy

    policy = load_policy(policy_source)
    config = load_config(upstreams_file) if upstreams_file else config_from_mapping(DEFAULT_CONFIG, source="defaults")
    if state_dir is not None:
        config = config.model_copy(update={"gateway": config.gateway.model_copy(update={"state_dir": state_dir})})
    check_upstream_transport(config)
    check_state(config)
    sock = bind_socket(host, port)  # a busy port fails here, before anything is announced
    try:
        try:
            gw = create_gateway(config, policy, policy_name=policy_source)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(
                f"cannot start the gateway: {type(exc).__name__}: {exc}",
                hint="check gateway.state_dir (permissions, free space) and the audit log path",
            ) from None
        if host not in ("127.0.0.1", "localhost", "::1"):
            note = f"note: listening on {host}; put TLS and client authentication in front of the gateway"
            click.echo(note, err=True)
        bound_port = sock.getsockname()[1]
        click.echo(
            f"bastion gateway on http://{host}:{bound_port} - upstreams: "
            + ", ".join(f"/{n}/ -> {u.base_url}" for n, u in config.upstreams.items())
            + f"; audit log: {config.gateway.audit_path}",
            err=True,
        )
        serve(gw, sock, access_log=access_log)
    finally:
        sock.close()
