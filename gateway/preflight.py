"""Start-up checks that turn an unusable setup into one clear line before anything is served."""

from __future__ import annotations

import errno
import ipaddress
import socket
from urllib.parse import urlsplit

from bastion.errors import ConfigError
from bastion.gateway.config import GatewayConfig
from bastion.gateway.state import clean_spool_dir, open_state_store


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_upstream_transport(config: GatewayConfig) -> None:
    """Refuse plain http to an upstream that is not on this machine, unless ``gateway.allow_plain_http``."""
    if config.gateway.allow_plain_http:
        return
    for name, up in config.upstreams.items():
        parts = urlsplit(up.base_url)
        host = parts.hostname or ""
        if parts.scheme != "http" or is_loopback(host):
            continue
        carries = (
            f"the provider key (${up.auth.api_key_env}) and the training data"
            if up.auth.mode == "replace"
            else "client credentials and the training data"
        )
        raise ConfigError(
            f"upstream {name!r} uses plain http to {host}, which is not this machine: {carries} would cross "
            "the network unencrypted",
            hint=f"use https:// for upstreams.{name}.base_url, or set gateway.allow_plain_http: true "
            "if a TLS-terminating proxy on a trusted network really sits there",
        )


def check_state(config: GatewayConfig) -> None:
    """Open (and close) the state store once: an unusable state dir or database fails here, in one line.

    Opening removes stale held parts; with a per-process part key (the state dir is then this
    process's alone) leftover spool files of an earlier run are removed too. With a configured key
    other processes may share the state dir and be spooling now, so spools are left to them.
    """
    settings = config.gateway
    store = open_state_store(
        settings.state_dir,
        part_key_env=settings.part_key_env,
        lease_s=settings.state_lease_s,
        idempotency_ttl_s=settings.idempotency_ttl_s,
    )
    try:
        if store.parts.ephemeral:
            clean_spool_dir(settings.spool_path)
    finally:
        store.close()


def bind_socket(host: str, port: int, *, backlog: int = 2048) -> socket.socket:
    """A listening socket on host:port, or a one-line ConfigError (a busy port, a bad address)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    family, socktype, proto, _, addr = infos[0]
    sock = socket.socket(family, socktype, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        hint = (
            "another process listens there: stop it or choose another --port" if exc.errno == errno.EADDRINUSE else None
        )
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", hint=hint) from None
    sock.set_inheritable(True)
    return sock
