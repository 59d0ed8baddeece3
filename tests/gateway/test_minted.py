"""bastion.gateway.minted: the ids clients send back hold no digit, so the personal-data scan of path ids and
query values never refuses one of the gateway's own (CI saw ``upload_bst204557203a8d…`` refused as a
national id half-way through an upload)."""

from __future__ import annotations

import re

import pytest

from bastion.gateway import minted
from bastion.gateway.errors import Refusal
from bastion.gateway.inbound import check_opaque
from bastion.policies import load_policy
from bastion.policies.engine import PolicyEngine

#: (prefix, length) of every id the adapters mint for a client to send back
MINTED = [("upload_bst", 24), ("part_bst", 24), ("bst", 48), ("bst", 32), ("bastion-upload-", 24)]
DERIVED = [("fwds_", 32), ("hflfs_", 32)]


@pytest.fixture(scope="module", params=["pack:eu-gdpr", "pack:block-all-pii"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    return PolicyEngine(load_policy(request.param))


def test_a_hex_id_of_the_old_shape_could_read_as_personal_data(engine: PolicyEngine) -> None:
    """The failure this module removes: nine digits of a hex id pass the Dutch BSN check."""
    with pytest.raises(Refusal) as err:
        check_opaque(engine, {"upload_id": "upload_bst204557203a8d5a7c3d18c28e"}, "path id", "uploads.parts.create")
    assert err.value.kind == "invalid_id"


@pytest.mark.parametrize(("prefix", "length"), MINTED)
def test_random_ids_are_letters_and_never_read_as_personal_data(engine: PolicyEngine, prefix: str, length: int) -> None:
    ids = [minted.random_id(prefix, length) for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(re.escape(prefix) + f"[a-z]{{{length}}}", i) for i in ids)
    for start in range(0, len(ids), 200):  # one scan per 200 ids: each a value of its own
        values = {f"id{n}": i for n, i in enumerate(ids[start : start + 200])}
        check_opaque(engine, values, "path id", "x.get")  # raises on any finding


@pytest.mark.parametrize(("prefix", "length"), DERIVED)
def test_derived_ids_are_stable_distinct_letters(engine: PolicyEngine, prefix: str, length: int) -> None:
    ids = [minted.derived_id(prefix, f"upstream|sha256:{n:016x}|org/repo|{n}", length) for n in range(2000)]
    assert ids[7] == minted.derived_id(prefix, "upstream|sha256:0000000000000007|org/repo|7", length)
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(minted.shape(prefix, length), i) and not any(c.isdigit() for c in i) for i in ids)
    check_opaque(engine, {f"id{n}": i for n, i in enumerate(ids)}, "path id", "x.get")


def test_the_shape_takes_letters_and_the_hex_of_earlier_releases_only() -> None:
    shape = re.compile(minted.shape("upload_bst", 24))
    assert shape.fullmatch("upload_bst" + "q" * 24)
    assert shape.fullmatch("upload_bst" + "0a" * 12)  # minted by an earlier release, still in flight
    for bad in ("upload_bst" + "g1" * 12, "upload_bst" + "q" * 23, "upload_bst" + "Q" * 24, "upload_bq" + "q" * 24):
        assert shape.fullmatch(bad) is None, bad


def test_a_derived_id_longer_than_its_digest_is_refused() -> None:
    with pytest.raises(ValueError, match="at most 54 letters"):
        minted.derived_id("x_", "material", 55)
    assert len(minted.derived_id("", "material", 54)) == 54
