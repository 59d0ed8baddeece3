"""``bastion gateway``: run the egress gateway in front of fine-tune APIs."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bastion.errors import ConfigError
from bastion.extras import require

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway
    from bastion.gateway.config import GatewayConfig


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
    "--replica-id",
    default=None,
    help="This replica's name (gateway.replica_id): its audit log is <state_dir>/audit/<id>/. "
    "Default: <hostname>-<port>.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes sharing the port, the state store and the metrics; each writes its own audit log.",
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
    replica_id: str | None,
    workers: int,
    access_log: bool,
) -> None:
    """Run the egress gateway.

    Clients point their SDK at http://HOST:PORT/<upstream>/v1 (e.g. base_url=http://127.0.0.1:8088/openai/v1).
    Training uploads are scanned against the policy and forwarded only when admitted; every decision is
    appended to the hash-chained audit log in the state dir; Prometheus metrics are on /metrics.
    SIGTERM/SIGINT stop accepting, give in-flight requests gateway.shutdown_grace_s, then cancel them.
    With --workers N, N processes serve the same port; each replica and worker keeps its own audit log
    under <state_dir>/audit/ (check them together with `bastion audit verify` / `bastion audit merge`).
    """
    require("gateway", feature="bastion gateway")
    from bastion.gateway.config import DEFAULT_CONFIG, config_from_mapping, load_config
    from bastion.gateway.preflight import bind_socket, check_state, check_upstream_transport
    from bastion.gateway.replicas import (
        audit_path_for,
        check_replica_id,
        default_replica_id,
        with_audit_path,
        worker_audit_path,
    )
    from bastion.gateway.serve import serve
    from bastion.gateway.workers import multiprocess_metrics, run_workers, use_multiprocess_values
    from bastion.policies import load_policy

    policy = load_policy(policy_source)
    config = load_config(upstreams_file) if upstreams_file else config_from_mapping(DEFAULT_CONFIG, source="defaults")
    if state_dir is not None:
        config = config.model_copy(update={"gateway": config.gateway.model_copy(update={"state_dir": state_dir})})
    check_upstream_transport(config)
    check_state(config)
    sock = bind_socket(host, port)  # a busy port fails here, before anything is announced
    try:
        bound_port = sock.getsockname()[1]
        rid = check_replica_id(replica_id or config.gateway.replica_id or default_replica_id(bound_port))
        if workers == 1:
            audit_paths = [audit_path_for(config, rid)]
        else:
            audit_paths = [worker_audit_path(config, rid, k) for k in range(workers)]
        for path in audit_paths:  # a held lock or a torn log: one line now, before the banner
            _check_audit(config, path)
        if host not in ("127.0.0.1", "localhost", "::1"):
            note = f"note: listening on {host}; put TLS and client authentication in front of the gateway"
            click.echo(note, err=True)
        where = audit_paths[0] if workers == 1 else audit_paths[0].parent.parent
        click.echo(
            f"bastion gateway on http://{host}:{bound_port} - upstreams: "
            + ", ".join(f"/{n}/ -> {u.base_url}" for n, u in config.upstreams.items())
            + f"; replica {rid}"
            + (f", {workers} workers" if workers > 1 else "")
            + f"; audit log: {where}",
            err=True,
        )
        if workers == 1:
            gw = _create(with_audit_path(config, audit_paths[0]), policy, policy_source)
            serve(gw, sock, access_log=access_log)
            return
        if config.gateway.part_key_env is None:
            # Held parts written by one worker are read by another: the workers share a key made for
            # this run (parts do not outlive it, as with one process and no configured key).
            os.environ[RUN_PART_KEY_ENV] = secrets.token_hex(32)
            update = {"part_key_env": RUN_PART_KEY_ENV}
            config = config.model_copy(update={"gateway": config.gateway.model_copy(update=update)})

        def worker(index: int) -> None:
            use_multiprocess_values()
            gw = _create(with_audit_path(config, audit_paths[index]), policy, policy_source)
            serve(gw, sock, access_log=access_log)

        with multiprocess_metrics():
            status = run_workers(workers, worker, say=lambda line: click.echo(line, err=True))
        if status:
            sys.exit(status)
    finally:
        sock.close()


RUN_PART_KEY_ENV = "BASTION_GATEWAY_RUN_PART_KEY"


def _check_audit(config: GatewayConfig, path: Path) -> None:
    from bastion.gateway.audit import AuditLog

    settings = config.gateway
    AuditLog(
        path, segment_max_bytes=settings.audit_segment_max_bytes, segment_max_entries=settings.audit_segment_max_entries
    ).close()


def _create(config: GatewayConfig, policy: Any, policy_source: str) -> Gateway:
    import sqlite3

    from bastion.gateway.app import create_gateway

    try:
        return create_gateway(config, policy, policy_name=policy_source)
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"cannot start the gateway: {type(exc).__name__}: {exc}",
            hint="check gateway.state_dir (permissions, free space) and the audit log path",
        ) from None
