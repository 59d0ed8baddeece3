"""A Merkle tree over record digests, with inclusion proofs (RFC 6962 / RFC 9162 hashing).

Leaves are ``SHA-256(0x00 || leaf_bytes)`` and interior nodes ``SHA-256(0x01 || left || right)``, so a
leaf can never be passed off as an interior node. The tree shape for ``n`` leaves splits at the
largest power of two below ``n``, exactly as Certificate Transparency logs do; proofs produced here
can be checked by any RFC 9162 implementation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

EMPTY_ROOT = hashlib.sha256(b"").hexdigest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (n >= 2)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class MerkleTree:
    """Merkle tree over a sequence of leaf hashes (each already ``leaf_hash``-ed)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self._leaves = list(leaves)
        # levels[0] = leaves; each level pairs adjacent nodes, an odd last node is carried up.
        # This produces the same root as the recursive RFC 6962 definition.
        self._levels: list[list[bytes]] = [self._leaves]
        level = self._leaves
        while len(level) > 1:
            nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self._levels.append(nxt)
            level = nxt

    def __len__(self) -> int:
        return len(self._leaves)

    @property
    def root(self) -> str:
        """Hex root; the SHA-256 of the empty string for an empty tree."""
        if not self._leaves:
            return EMPTY_ROOT
        return self._levels[-1][0].hex()

    def proof(self, index: int) -> list[str]:
        """Audit path for leaf ``index`` (hex sibling hashes, leaf level first)."""
        if not 0 <= index < len(self._leaves):
            raise IndexError(f"leaf index {index} out of range for a tree of {len(self._leaves)} leaves")
        path: list[str] = []
        i = index
        for level in self._levels[:-1]:
            sibling = i ^ 1
            if sibling < len(level):
                path.append(level[sibling].hex())
            i //= 2
        return path


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[str], root: str) -> bool:
    """Check that ``leaf`` (a leaf hash) sits at ``index`` in a tree of ``size`` leaves with ``root``.

    A malformed proof (a sibling that is not hex) is simply not a valid proof: the result is ``False``.
    """
    if not 0 <= index < size:
        return False
    try:
        return _verify_inclusion(leaf, index, size, proof, root)
    except ValueError:
        return False


def _verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[str], root: str) -> bool:
    node = leaf
    i, last = index, size - 1
    steps = iter(proof)
    while last > 0:
        if i % 2 == 1:
            sib = next(steps, None)
            if sib is None:
                return False
            node = node_hash(bytes.fromhex(sib), node)
        elif i < last:
            sib = next(steps, None)
            if sib is None:
                return False
            node = node_hash(node, bytes.fromhex(sib))
        # else: i is the last node of an odd level and is carried up unchanged.
        i //= 2
        last //= 2
    if next(steps, None) is not None:
        return False
    return node.hex() == root


@dataclass(frozen=True)
class InclusionProof:
    """Proof that one record belongs to a dataset digest."""

    index: int
    size: int
    leaf: str
    path: tuple[str, ...]
    root: str

    def verify(self) -> bool:
        try:
            leaf = bytes.fromhex(self.leaf)
        except ValueError:
            return False
        return verify_inclusion(leaf, self.index, self.size, self.path, self.root)
