"""Replica and worker identity: which audit log a `bastion gateway` process writes.

Every gateway process keeps its own hash-chained audit log (no lock shared between replicas on the
hot path); ``bastion audit merge`` puts the logs of a deployment back into one timeline. A replica's
log lives in ``<state_dir>/audit/<replica id>/``; worker ``k`` of ``--workers N`` writes
``<replica id>.w<k>``. An explicit ``gateway.audit_log`` is used as it is (one process only: the
audit lock refuses a second writer).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path

from bastion.errors import ConfigError
from bastion.gateway.config import GatewayConfig

AUDIT_SUBDIR = "audit"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_replica_id(replica_id: str) -> str:
    if not _ID.match(replica_id):
        raise ConfigError(
            f"replica id {replica_id[:80]!r} is not usable as a directory name",
            hint="use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return replica_id


def default_replica_id(port: int) -> str:
    """``<hostname>-<port>``: distinct for replicas on one machine, stable across restarts on the same port."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname().split(".")[0]).strip("-._") or "gateway"
    return check_replica_id(f"{host[:50]}-{port}")


def worker_id(replica_id: str, index: int) -> str:
    return f"{replica_id}.w{index}"


def audit_path_for(config: GatewayConfig, replica_id: str) -> Path:
    """The active audit segment of ``replica_id``: ``gateway.audit_log`` if set, else under the state dir."""
    settings = config.gateway
    if settings.audit_log is not None:
        return settings.audit_log
    return settings.state_dir / AUDIT_SUBDIR / check_replica_id(replica_id) / "audit.jsonl"


def with_audit_path(config: GatewayConfig, path: Path) -> GatewayConfig:
    return config.model_copy(update={"gateway": config.gateway.model_copy(update={"audit_log": path})})


def worker_audit_path(config: GatewayConfig, replica_id: str, index: int) -> Path:
    """Worker ``index``'s audit log: its own directory, also when ``gateway.audit_log`` is set."""
    settings = config.gateway
    if settings.audit_log is not None:
        return settings.audit_log.parent / f"w{index}" / settings.audit_log.name
    return audit_path_for(config, worker_id(replica_id, index))
