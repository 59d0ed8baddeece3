"""Where the state store gets its database connections (the engine-neutral pieces live in :mod:`bastion.sqlstore`)."""

from __future__ import annotations

from bastion.sqlstore.connections import RECONNECT_RETRIES, Connections, SingleConnection, read_rows, transaction

__all__ = ["RECONNECT_RETRIES", "Connections", "SingleConnection", "read_rows", "transaction"]
