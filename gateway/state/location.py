"""Where a state store lives: a SQLite state dir (a path or ``sqlite:///DIR``) or a ``postgresql://`` URL."""

from __future__ import annotations

from pathlib import Path

from bastion.gateway.state.errors import StateError
from bastion.sqlstore import POSTGRES_SCHEMES, is_postgres_url

SQLITE_SCHEME = "sqlite:///"
__all__ = ["POSTGRES_SCHEMES", "SQLITE_SCHEME", "describe_location", "is_postgres_url", "sqlite_dir"]


def sqlite_dir(location: Path | str) -> Path:
    """The state dir of a SQLite location: a path, or ``sqlite:///DIR`` (``sqlite:////abs/dir`` absolute)."""
    if isinstance(location, Path):
        return location
    if location.startswith(SQLITE_SCHEME):
        rest = location[len(SQLITE_SCHEME) :]
        if not rest:
            raise StateError(
                "gateway.state_url sqlite:/// names no directory; write sqlite:///DIR or sqlite:////ABS/DIR"
            )
        return Path(rest)
    if "://" in location:
        scheme = location.split("://", 1)[0][:20]
        raise StateError(
            f"gateway.state_url has the unsupported scheme {scheme!r}",
            hint="use sqlite:///DIR (one machine) or postgresql://USER@HOST:PORT/DB (replicas)",
        )
    return Path(location)


def describe_location(location: Path | str) -> str:
    """``location`` as messages show it: a URL without its password, or the state dir."""
    if is_postgres_url(location):
        from bastion.gateway.state.postgres import safe_url

        return safe_url(str(location))
    return str(sqlite_dir(location))
