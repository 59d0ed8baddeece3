"""Engine-neutral pieces of Bastion's SQL stores (the gateway's state store, the run registry).

SQLite by default, PostgreSQL (psycopg 3) when given a ``postgresql://`` URL. What differs between the
engines is in a :class:`~bastion.sqlstore.dialect.Dialect`; connections come from a
:class:`~bastion.sqlstore.connections.Connections` source; schema versions are applied by
:func:`~bastion.sqlstore.migrations.apply_migrations`. Each store subclasses the dialects to word
errors for the person who runs it (``describe``).
"""

from __future__ import annotations

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: object) -> bool:
    """Whether ``location`` is a PostgreSQL URL (anything else is a SQLite location)."""
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


__all__ = ["POSTGRES_SCHEMES", "is_postgres_url"]
