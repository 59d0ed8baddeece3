"""Chunked inclusion proofs are exactly the whole tree's proofs, and only real proofs verify."""

from __future__ import annotations

import hashlib

import pytest

from bastion.provenance.merkle import EMPTY_ROOT, MerkleTree, leaf_hash
from bastion.provenance.registry.proofs import (
    CHUNK,
    build_proof,
    build_proof_from_tree,
    check_proof,
    chunk_roots,
    root_over_chunks,
    tree_blob,
)


def _digests(n: int) -> list[bytes]:
    return [hashlib.sha256(f"record {i}".encode()).digest() for i in range(n)]


@pytest.mark.parametrize("chunk", [1, 2, 4, 8])
def test_chunked_proofs_equal_whole_tree_proofs(chunk: int) -> None:
    for n in range(1, 41):
        digests = _digests(n)
        tree = MerkleTree([leaf_hash(d) for d in digests])
        chunks = list(chunk_roots(digests, chunk))
        roots = [r for _, _, r in chunks]
        assert root_over_chunks(roots) == tree.root, (n, chunk)
        for i, d in enumerate(digests):
            p = build_proof(d, i, n, chunks[i // chunk][1], roots, chunk)
            assert list(p.path) == tree.proof(i) and p.root == tree.root, (n, chunk, i)
            # What the registry serves: the upper path read from the stored levels, no hashing.
            assert build_proof_from_tree(d, i, n, chunks[i // chunk][1], tree_blob(roots), chunk) == p
            assert p.verify() and check_proof(p.as_dict(), d.hex())


@pytest.mark.parametrize("n", [CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 7])
def test_default_chunk_size_around_its_boundaries(n: int) -> None:
    digests = _digests(n)
    tree = MerkleTree([leaf_hash(d) for d in digests])
    chunks = list(chunk_roots(digests))
    roots = [r for _, _, r in chunks]
    assert root_over_chunks(roots) == tree.root
    for i in (0, CHUNK - 1, n // 2, n - 1):
        i = min(i, n - 1)
        p = build_proof(digests[i], i, n, chunks[i // CHUNK][1], roots)
        assert list(p.path) == tree.proof(i)


def test_empty_dataset_has_the_empty_root() -> None:
    assert list(chunk_roots([])) == [] and root_over_chunks([]) == EMPTY_ROOT


def test_only_real_proofs_verify() -> None:
    digests = _digests(13)
    chunks = list(chunk_roots(digests, 4))
    roots = [r for _, _, r in chunks]
    good = build_proof(digests[6], 6, 13, chunks[1][1], roots, 4).as_dict()
    assert check_proof(good) and check_proof(good, digests[6].hex())
    assert not check_proof(good, digests[5].hex())  # for another record
    assert not check_proof({**good, "index": 7})
    assert not check_proof({**good, "size": 7})  # (the size is also the signed record count: lineage tests check it)
    assert not check_proof({**good, "size": 6})
    assert not check_proof({**good, "root": "00" * 32})
    assert not check_proof({**good, "path": good["path"][:-1]})
    assert not check_proof({**good, "path": [*good["path"], "00" * 32]})
    assert not check_proof({**good, "path": ["zz", *good["path"][1:]]})  # not hex
    assert not check_proof({k: v for k, v in good.items() if k != "root"})
    assert not check_proof({**good, "record_digest": "nothex"})
    with pytest.raises(ValueError, match="does not hold the record"):
        build_proof(digests[5], 6, 13, chunks[1][1], roots, 4)
