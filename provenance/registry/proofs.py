"""Merkle inclusion proofs over a dataset's record digests, served from chunks instead of the whole tree.

A dataset's Merkle root (``predicate.datasets[i].merkle_root``, RFC 9162 hashing, see
:mod:`bastion.provenance.merkle`) is built level by level, pairing adjacent nodes and carrying an odd
last node up. Cut the leaves into aligned chunks of ``CHUNK`` (a power of two) records: each chunk's
own tree root is exactly the node of the full tree at height ``log2(CHUNK)`` over those leaves (the
pairs stay aligned inside the chunk, a partial last chunk carries the same way), and the tree over the
chunk roots is the top of the full tree. So the registry keeps the leaves per chunk and the chunk
roots per dataset; a proof is the path inside one chunk followed by the path over the chunk roots, and
it is the same proof :meth:`MerkleTree.proof` gives for the whole tree, at the cost of one chunk.

:func:`check_proof` is what a third party runs: it needs only ``hashlib`` (docs/registry.md prints a
stand-alone copy).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.provenance.merkle import EMPTY_ROOT, MerkleTree, leaf_hash, verify_inclusion

CHUNK = 1024
"""Records per chunk (a power of two)."""
DIGEST_SIZE = 32


def chunk_roots(digests: Iterable[bytes], chunk: int = CHUNK) -> Iterator[tuple[int, bytes, bytes]]:
    """``(chunk index, concatenated record digests, chunk root)`` for consecutive chunks of raw 32-byte digests."""
    buf: list[bytes] = []
    index = 0
    for d in digests:
        buf.append(d)
        if len(buf) == chunk:
            yield index, b"".join(buf), _root_bytes(buf)
            index += 1
            buf = []
    if buf:
        yield index, b"".join(buf), _root_bytes(buf)


def _root_bytes(digests: Sequence[bytes]) -> bytes:
    return bytes.fromhex(MerkleTree([leaf_hash(d) for d in digests]).root)


def root_over_chunks(roots: Sequence[bytes]) -> str:
    """The dataset's Merkle root from its chunk roots (hex; the empty tree's root for no records)."""
    if not roots:
        return EMPTY_ROOT
    return MerkleTree(list(roots)).root


def level_sizes(n: int) -> list[int]:
    """Node counts of each level of a tree over ``n`` nodes (pairs from the left, an odd last node carried)."""
    sizes = [n] if n else []
    while sizes and sizes[-1] > 1:
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def tree_blob(roots: Sequence[bytes]) -> bytes:
    """Every level of the tree over the chunk roots, level 0 (the roots) first, concatenated."""
    level = list(roots)
    out = [b"".join(level)]
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        out.append(b"".join(nxt))
        level = nxt
    return b"".join(out)


def _node(blob: bytes, offset: int, i: int) -> bytes:
    return blob[(offset + i) * DIGEST_SIZE : (offset + i + 1) * DIGEST_SIZE]


def upper_path(blob: bytes, chunks: int, index: int) -> tuple[list[str], str]:
    """(path from chunk ``index`` up to the root, root) read from :func:`tree_blob`'s levels; no hashing."""
    sizes = level_sizes(chunks)
    path: list[str] = []
    offset, i = 0, index
    for size in sizes[:-1]:
        if i ^ 1 < size:
            path.append(_node(blob, offset, i ^ 1).hex())
        offset += size
        i //= 2
    return path, (_node(blob, offset, 0).hex() if sizes else EMPTY_ROOT)


def split_leaves(blob: bytes) -> list[bytes]:
    return [blob[i : i + DIGEST_SIZE] for i in range(0, len(blob), DIGEST_SIZE)]


@dataclass(frozen=True)
class RecordProof:
    """That the record with ``record_digest`` sits at ``index`` of a dataset of ``size`` records with ``root``."""

    record_digest: str
    index: int
    size: int
    path: tuple[str, ...]
    root: str

    @property
    def leaf(self) -> str:
        return leaf_hash(bytes.fromhex(self.record_digest)).hex()

    def verify(self) -> bool:
        return check_proof(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_digest": self.record_digest,
            "leaf": self.leaf,
            "index": self.index,
            "size": self.size,
            "path": list(self.path),
            "root": self.root,
            "hashing": "RFC 9162: leaf = SHA-256(0x00 || record digest), node = SHA-256(0x01 || left || right)",
        }


def build_proof(
    record_digest: bytes, index: int, size: int, chunk_leaves: bytes, roots: Sequence[bytes], chunk: int = CHUNK
) -> RecordProof:
    """The inclusion proof of leaf ``index`` from its chunk's leaves and every chunk root."""
    offset = index % chunk
    leaves = split_leaves(chunk_leaves)
    if leaves[offset] != record_digest:
        raise ValueError(f"chunk {index // chunk} does not hold the record at position {offset}")
    inner = MerkleTree([leaf_hash(d) for d in leaves]).proof(offset)
    upper = MerkleTree(list(roots)).proof(index // chunk) if len(roots) > 1 else []
    return RecordProof(
        record_digest=record_digest.hex(),
        index=index,
        size=size,
        path=tuple(inner + upper),
        root=root_over_chunks(roots),
    )


def build_proof_from_tree(
    record_digest: bytes, index: int, size: int, chunk_leaves: bytes, tree: bytes, chunk: int = CHUNK
) -> RecordProof:
    """:func:`build_proof` with the upper tree read from :func:`tree_blob` (what the registry stores)."""
    offset = index % chunk
    leaves = split_leaves(chunk_leaves)
    if leaves[offset] != record_digest:
        raise ValueError(f"chunk {index // chunk} does not hold the record at position {offset}")
    inner = MerkleTree([leaf_hash(d) for d in leaves]).proof(offset)
    upper, root = upper_path(tree, (size + chunk - 1) // chunk, index // chunk)
    return RecordProof(record_digest=record_digest.hex(), index=index, size=size, path=tuple(inner + upper), root=root)


def check_proof(proof: Mapping[str, Any], record_digest: str | None = None) -> bool:
    """Check a proof as :meth:`RecordProof.as_dict` writes it; ``record_digest``: the record it must be for.

    Recomputes the leaf from the record digest (never trusts the proof's ``leaf``), then the path up to
    the root. Any malformed field makes the answer ``False``.
    """
    try:
        digest = str(proof["record_digest"]).lower()
        if record_digest is not None and digest != record_digest.lower():
            return False
        leaf = hashlib.sha256(b"\x00" + bytes.fromhex(digest)).digest()
        index, size = int(proof["index"]), int(proof["size"])
        path = [str(p) for p in proof["path"]]
        root = str(proof["root"]).lower()
    except (KeyError, TypeError, ValueError):
        return False
    return verify_inclusion(leaf, index, size, path, root)


__all__ = [
    "CHUNK",
    "RecordProof",
    "build_proof",
    "build_proof_from_tree",
    "check_proof",
    "chunk_roots",
    "level_sizes",
    "root_over_chunks",
    "split_leaves",
    "tree_blob",
    "upper_path",
]
