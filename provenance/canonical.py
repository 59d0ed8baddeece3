"""Canonical JSON (RFC 8785) and the digests built on it."""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785


def canonical_json(value: Any) -> bytes:
    """Serialize ``value`` as RFC 8785 canonical JSON (UTF-8 bytes).

    Raises ``rfc8785.CanonicalizationError`` (a ``ValueError``) for values JSON cannot represent
    exactly, such as NaN or integers beyond IEEE-754 double precision.
    """
    return rfc8785.dumps(value)


def canonical_digest(value: Any) -> str:
    """Hex SHA-256 of the canonical JSON form of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
