"""Ids this gateway makes up for clients to send back: lower-case letters only.

Every id a client sends back in a path or a query is scanned like any value that could leave
(:func:`bastion.gateway.inbound.check_opaque`). A hex id holds digit runs, and a run of 9 to 19 digits
passes a national-id or card check now and then: under ``pack:eu-gdpr`` 0.6 % of ``upload_bst`` + 24 hex
digits, 0.9 % of 32 and 1.5 % of 48 read as personal data, so that share of uploads was refused half-way;
an id derived from a digest (a held LFS object's, a held Fireworks dataset's) was refused every time for
the same file. Letters hold no number, and 26 letters a character carry 4.7 bits (24 letters: 112 bits).

Ids minted before letters were used are hex; the patterns built by :func:`shape` still take them, so an
upload opened on a replica of an earlier release can be finished on this one.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string

LETTERS = string.ascii_lowercase


def random_id(prefix: str, length: int) -> str:
    """``prefix`` and ``length`` random lower-case letters (``secrets``)."""
    return prefix + "".join(secrets.choice(LETTERS) for _ in range(length))


def derived_id(prefix: str, material: str, length: int) -> str:
    """``prefix`` and ``length`` letters drawn from the sha256 of ``material``: the same material, the same id."""
    number = int.from_bytes(hashlib.sha256(material.encode("utf-8", "surrogatepass")).digest(), "big")
    if length * 4.7 > 256:
        raise ValueError(f"a derived id holds at most 54 letters of a sha256, not {length}")
    letters = []
    for _ in range(length):
        number, index = divmod(number, len(LETTERS))
        letters.append(LETTERS[index])
    return prefix + "".join(letters)


def shape(prefix: str, length: int) -> str:
    """The pattern of ids minted with ``prefix`` and ``length``: letters, or hex from an earlier release."""
    return f"{re.escape(prefix)}(?:[a-z]{{{length}}}|[0-9a-f]{{{length}}})"
