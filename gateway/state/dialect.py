"""The state store's dialects: the engine mechanics of :mod:`bastion.sqlstore.dialect`, and how a driver
error becomes an operator-readable :class:`StateError`. The SQL in store.py and schema.py is otherwise
plain: ``INSERT ... ON CONFLICT (...) DO NOTHING`` and ``COALESCE`` work the same on SQLite (>= 3.24)
and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

from bastion.gateway.state.errors import StateError
from bastion.sqlstore import dialect as base

FIX = "fix permissions or set gateway.state_dir"


class Dialect(base.Dialect):
    """The state store's wording of driver errors; the engine mechanics come from :mod:`bastion.sqlstore`."""

    def describe(self, exc: Exception, where: str) -> StateError:
        return StateError(f"state database {where} failed: {exc}", hint=FIX)


class SQLiteDialect(base.SQLiteBase, Dialect):
    def describe(self, exc: Exception, where: str) -> StateError:
        msg = str(exc)
        low = msg.lower()
        if "not a database" in low or "malformed" in low:
            return StateError(
                f"state database {where} is not a usable SQLite database ({msg})",
                hint="move the file away (the gateway creates a new one) or set gateway.state_dir to another directory",
            )
        if "readonly" in low or "read-only" in low:
            return StateError(f"state database {where} is not writable: {msg}; {FIX}")
        if "unable to open" in low:
            return StateError(f"state database {where} cannot be opened: {msg}; {FIX}")
        if "full" in low:
            return StateError(
                f"state database {where} cannot be written: {msg}", hint="free disk space under the state dir"
            )
        if "locked" in low or "busy" in low:
            return StateError(
                f"state database {where} stayed locked by another process: {msg}",
                hint="another gateway process holds a long transaction on the same state dir; retry",
            )
        return StateError(f"state database {where} failed: {msg}", hint=FIX)


def sqlite_location(path: Path) -> str:
    return str(path)
