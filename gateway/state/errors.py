"""Errors of the gateway's state store.

=====================  =====================================================================
``StateError``         the state dir or database cannot be used (missing permissions, not a
                       database, written by a newer Bastion, a failed write); operator-readable
``StateConflict``      the request conflicts with the stored state (an upload that is not open
                       any more, a complete that is still running elsewhere); a client-side 409
=====================  =====================================================================
"""

from __future__ import annotations

from bastion.errors import BastionError


class StateError(BastionError):
    """The gateway's state (database, held-part files) cannot be read or written."""


class StateConflict(StateError):
    """The operation conflicts with what the store holds (answer the client with 409 / retry later)."""
