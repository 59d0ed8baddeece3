"""Merkle tree and inclusion proofs, checked against independent RFC 6962 / RFC 9162 reference code."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.provenance.merkle import EMPTY_ROOT, InclusionProof, MerkleTree, leaf_hash, node_hash, verify_inclusion


def rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) from RFC 6962 section 2.1, written recursively from the RFC text."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + rfc6962_root(leaves[:k]) + rfc6962_root(leaves[k:])).digest()


def rfc6962_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) from RFC 6962 section 2.1.1."""
    n = len(leaves)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*rfc6962_path(m, leaves[:k]), rfc6962_root(leaves[k:])]
    return [*rfc6962_path(m - k, leaves[k:]), rfc6962_root(leaves[:k])]


def rfc9162_verify(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """The inclusion-proof verification algorithm of RFC 9162 section 2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def leaves_for(n: int) -> list[bytes]:
    return [leaf_hash(f"record-{i}".encode()) for i in range(n)]


def test_empty_tree_root_is_sha256_of_empty_string() -> None:
    assert MerkleTree([]).root == EMPTY_ROOT == hashlib.sha256(b"").hexdigest()


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert a == hashlib.sha256(b"\x00a").digest()
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    # A two-leaf tree's root is not the leaf hash of the concatenated children (second-preimage guard).
    assert MerkleTree([a, b]).root != leaf_hash(a + b).hex()


@pytest.mark.parametrize("size", range(34))
def test_root_and_every_proof_match_the_rfcs(size: int) -> None:
    leaves = leaves_for(size)
    tree = MerkleTree(leaves)
    assert len(tree) == size
    assert tree.root == rfc6962_root(leaves).hex()
    for i in range(size):
        path = tree.proof(i)
        assert path == [h.hex() for h in rfc6962_path(i, leaves)]
        assert verify_inclusion(leaves[i], i, size, path, tree.root)
        assert rfc9162_verify(leaves[i], i, size, [bytes.fromhex(h) for h in path], bytes.fromhex(tree.root))
        assert InclusionProof(index=i, size=size, leaf=leaves[i].hex(), path=tuple(path), root=tree.root).verify()


@pytest.mark.parametrize("size", [0, 1, 5])
def test_proof_index_out_of_range(size: int) -> None:
    tree = MerkleTree(leaves_for(size))
    with pytest.raises(IndexError, match="out of range"):
        tree.proof(size)
    with pytest.raises(IndexError):
        tree.proof(-1)
    assert not verify_inclusion(leaf_hash(b"x"), size, size, [], tree.root)


@settings(deadline=None)  # timing on a shared machine is not what is tested
@given(
    size=st.integers(min_value=1, max_value=33),
    data=st.data(),
)
def test_tampered_proofs_fail(size: int, data: st.DataObject) -> None:
    leaves = leaves_for(size)
    tree = MerkleTree(leaves)
    index = data.draw(st.integers(min_value=0, max_value=size - 1), label="index")
    path = tree.proof(index)
    root = tree.root
    leaf = leaves[index]
    assert verify_inclusion(leaf, index, size, path, root)

    # A different record at the same position.
    assert not verify_inclusion(leaf_hash(b"not in the dataset"), index, size, path, root)
    # Claimed at any other position.
    assert not any(verify_inclusion(leaf, other, size, path, root) for other in range(size) if other != index)
    # Another root.
    assert not verify_inclusion(leaf, index, size, path, hashlib.sha256(b"other").hexdigest())
    if path:
        # Flip one bit of one sibling.
        pos = data.draw(st.integers(min_value=0, max_value=len(path) - 1), label="sibling")
        bit = data.draw(st.integers(min_value=0, max_value=255), label="bit")
        raw = bytearray(bytes.fromhex(path[pos]))
        raw[bit // 8] ^= 1 << (bit % 8)
        bad = [*path]
        bad[pos] = raw.hex()
        assert not verify_inclusion(leaf, index, size, bad, root)
        # A sibling dropped, or the path reordered.
        assert not verify_inclusion(leaf, index, size, path[:-1], root)
        if len(path) > 1 and path[0] != path[1]:
            assert not verify_inclusion(leaf, index, size, [path[1], path[0], *path[2:]], root)
        # Non-hex garbage is an invalid proof, not a crash.
        assert not verify_inclusion(leaf, index, size, ["zz" * 32, *path[1:]], root)
    # An extra sibling appended.
    assert not verify_inclusion(leaf, index, size, [*path, "00" * 32], root)
    # The same path presented against the tree with one more record.
    bigger = MerkleTree([*leaves, leaf_hash(b"extra")])
    assert not verify_inclusion(leaf, index, size + 1, path, bigger.root)


def test_inclusion_proof_with_malformed_leaf_is_false() -> None:
    tree = MerkleTree(leaves_for(3))
    proof = InclusionProof(index=0, size=3, leaf="not hex", path=tuple(tree.proof(0)), root=tree.root)
    assert proof.verify() is False
