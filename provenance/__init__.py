"""The provenance core: hashing, dataset digests, the hash-chained ledger and the run statement."""

from __future__ import annotations

from bastion.provenance.canonical import canonical_digest, canonical_json
from bastion.provenance.datasets import DatasetDigest, hash_dataset, overlap, record_digest
from bastion.provenance.environment import capture_environment
from bastion.provenance.hashing import (
    DirectoryDigest,
    FileDigest,
    hash_directory,
    hash_file,
    hash_path,
    sha256_file,
)
from bastion.provenance.ledger import Ledger, LedgerHead, read_entries, verify_ledger
from bastion.provenance.merkle import InclusionProof, MerkleTree, verify_inclusion
from bastion.provenance.statement import (
    PREDICATE_TYPE,
    RECORD_DIR,
    STATEMENT_TYPE,
    build_statement,
    load_statement,
    write_statement,
)

__all__ = [
    "PREDICATE_TYPE",
    "RECORD_DIR",
    "STATEMENT_TYPE",
    "DatasetDigest",
    "DirectoryDigest",
    "FileDigest",
    "InclusionProof",
    "Ledger",
    "LedgerHead",
    "MerkleTree",
    "build_statement",
    "canonical_digest",
    "canonical_json",
    "capture_environment",
    "hash_dataset",
    "hash_directory",
    "hash_file",
    "hash_path",
    "load_statement",
    "overlap",
    "read_entries",
    "record_digest",
    "sha256_file",
    "verify_inclusion",
    "verify_ledger",
    "write_statement",
]
