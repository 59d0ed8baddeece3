"""Dataset digests: per-record canonical digests, Merkle roots, proofs, errors with file and line."""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.errors import InputError
from bastion.provenance.datasets import DatasetDigest, hash_dataset, overlap, record_digest
from bastion.provenance.merkle import MerkleTree, leaf_hash

CHAT = [
    {"messages": [{"role": "user", "content": "Bonjour, ça va?"}, {"role": "assistant", "content": "Oui 👍"}]},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], "id": 2},
    {"prompt": "tab\there", "chosen": "a", "rejected": "b", "score": 0.5, "flags": [True, False, None]},
]


def write_jsonl(path: Path, records: list[Any], **dumps: Any) -> Path:
    path.write_text("".join(json.dumps(r, **dumps) + "\n" for r in records), encoding="utf-8")
    return path


def test_record_digest_is_sha256_of_rfc8785() -> None:
    for r in CHAT:
        assert record_digest(r) == hashlib.sha256(rfc8785.dumps(r)).hexdigest()


def test_jsonl_digest_fields(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "train.jsonl", CHAT)
    seen: list[int] = []
    d = hash_dataset(f, role="train", progress=seen.append)
    assert d.name == "train.jsonl"
    assert d.path == str(f)
    assert d.format == "jsonl"
    assert d.size == f.stat().st_size == sum(seen)
    assert d.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert d.records == 3
    assert d.record_digests == [record_digest(r) for r in CHAT]
    assert d.merkle_root == MerkleTree([leaf_hash(bytes.fromhex(x)) for x in d.record_digests]).root
    assert d.as_dict() == {
        "name": "train.jsonl",
        "role": "train",
        "digest": {"sha256": d.sha256},
        "size": d.size,
        "format": "jsonl",
        "records": 3,
        "merkle_root": d.merkle_root,
    }
    assert hash_dataset(f, role="eval", name="held-out").as_dict()["role"] == "eval"
    assert hash_dataset(f, name="held-out").name == "held-out"


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson", ".jsonlines", ".JSONL"])
def test_jsonl_suffixes(tmp_path: Path, suffix: str) -> None:
    d = hash_dataset(write_jsonl(tmp_path / f"data{suffix}", CHAT))
    assert d.format == "jsonl" and d.records == 3


def test_record_digests_ignore_key_order_spacing_and_escapes(tmp_path: Path) -> None:
    compact = write_jsonl(tmp_path / "a.jsonl", CHAT, separators=(",", ":"), ensure_ascii=False)
    spaced = write_jsonl(tmp_path / "b.jsonl", CHAT, indent=None, separators=(" , ", " : "), ensure_ascii=True)
    # Reversed key order, every character \u-escaped, CRLF line ends, blank lines between records.
    lines = []
    for r in CHAT:
        text = json.dumps(dict(reversed(list(r.items()))), ensure_ascii=True)
        text = text.replace('"role"', '"\\u0072\\u006f\\u006c\\u0065"')
        lines.append(text + "\r\n\r\n")
    shuffled = tmp_path / "c.jsonl"
    shuffled.write_text("".join(lines), encoding="utf-8", newline="")
    digests = [hash_dataset(p) for p in (compact, spaced, shuffled)]
    assert len({d.sha256 for d in digests}) == 3  # the files differ byte for byte...
    assert len({tuple(d.record_digests) for d in digests}) == 1  # ...their records do not
    assert len({d.merkle_root for d in digests}) == 1
    assert digests[2].records == 3  # blank lines are not records
    assert overlap(digests[0], digests[2]) == 3


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(records=st.lists(json_values, min_size=0, max_size=6), seed=st.integers(0, 2**16))
def test_any_json_records_digest_the_same_whatever_the_formatting(records: list[Any], seed: int) -> None:
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory() as tmp:
        plain = write_jsonl(Path(tmp) / "plain.jsonl", records)
        f = Path(tmp) / "styled.jsonl"
        f.write_text(
            "".join(
                json.dumps(
                    r,
                    ensure_ascii=rng.random() < 0.5,
                    sort_keys=rng.random() < 0.5,
                    separators=rng.choice([(",", ":"), (", ", ": "), ("  ,", " :\t")]),
                )
                + rng.choice(["\n", "\r\n", "\n\n"])
                for r in records
            ),
            encoding="utf-8",
            newline="",
        )
        a, b = hash_dataset(plain), hash_dataset(f)
    assert a.record_digests == b.record_digests == [record_digest(r) for r in records]
    assert a.merkle_root == b.merkle_root
    assert a.records == len(records)


@pytest.mark.parametrize("n", range(34))
def test_every_record_has_a_verifying_proof(tmp_path: Path, n: int) -> None:
    records = [{"i": i, "text": f"sample {i}"} for i in range(n)]
    d = hash_dataset(write_jsonl(tmp_path / "d.jsonl", records))
    assert d.records == n
    for i in range(n):
        proof = d.proof(i)
        assert proof.size == n and proof.index == i and proof.root == d.merkle_root
        assert proof.leaf == leaf_hash(bytes.fromhex(record_digest(records[i]))).hex()
        assert proof.verify()
        tampered = type(proof)(
            index=proof.index, size=proof.size, leaf=leaf_hash(b"forged").hex(), path=proof.path, root=proof.root
        )
        assert not tampered.verify()
    with pytest.raises(IndexError):
        d.proof(n)


def test_json_array_dataset_matches_jsonl(tmp_path: Path) -> None:
    arr = tmp_path / "data.json"
    arr.write_text(json.dumps(CHAT, indent=4), encoding="utf-8")
    a = hash_dataset(arr)
    b = hash_dataset(write_jsonl(tmp_path / "data.jsonl", CHAT))
    assert a.format == "json"
    assert a.sha256 == hashlib.sha256(arr.read_bytes()).hexdigest()
    assert (a.records, a.merkle_root, a.record_digests) == (b.records, b.merkle_root, b.record_digests)
    assert a.proof(1).verify()


def test_json_dataset_that_is_not_an_array(tmp_path: Path) -> None:
    f = tmp_path / "data.json"
    f.write_text('{"messages": []}')
    with pytest.raises(InputError, match="must be an array") as info:
        hash_dataset(f)
    assert info.value.path == f


def test_json_dataset_syntax_error_reports_its_line(tmp_path: Path) -> None:
    f = tmp_path / "data.json"
    f.write_text('[\n  {"a": 1},\n  {"b": 2,}\n]\n')
    with pytest.raises(InputError, match="not valid JSON") as info:
        hash_dataset(f)
    assert (info.value.path, info.value.line) == (f, 3)
    assert "JSON array" in str(info.value)


def test_json_dataset_nan_names_the_record(tmp_path: Path) -> None:
    f = tmp_path / "data.json"
    f.write_text('[{"a": 1}, {"score": NaN}]')
    with pytest.raises(InputError, match="record at index 1 cannot be canonicalized") as info:
        hash_dataset(f)
    assert "NaN" in str(info.value)


def test_non_json_line_reports_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    f.write_text('{"a": 1}\n\n{"b": 2}\nthis is not json\n{"c": 3}\n')
    with pytest.raises(InputError, match="not valid JSON") as info:
        hash_dataset(f)
    assert info.value.path == f
    assert info.value.line == 4  # blank lines count: it is the 4th line of the file
    assert str(info.value).startswith(f"{f}:4: ")
    assert "one complete JSON value" in str(info.value)


def test_truncated_record_on_last_line(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    f.write_bytes(b'{"a": 1}\n{"b": "cut off')
    with pytest.raises(InputError) as info:
        hash_dataset(f)
    assert info.value.line == 2


def test_invalid_utf8_reports_the_line(tmp_path: Path) -> None:
    f = tmp_path / "train.jsonl"
    f.write_bytes(b'{"a": "ok"}\n{"a": "ok"}\n{"a": "caf\xe9"}\n')
    with pytest.raises(InputError, match="not valid UTF-8") as info:
        hash_dataset(f)
    assert (info.value.path, info.value.line) == (f, 3)
    assert "byte 10 of the line" in str(info.value)
    assert "re-encode" in str(info.value)


def test_invalid_utf8_in_json_array_reports_the_line(tmp_path: Path) -> None:
    f = tmp_path / "data.json"
    f.write_bytes(b'[\n{"a": "ok"},\n{"a": "\xff"}\n]')
    with pytest.raises(InputError, match="not valid UTF-8") as info:
        hash_dataset(f)
    assert info.value.line == 3


@pytest.mark.parametrize(
    ("value", "word"),
    [("NaN", "nan"), ("Infinity", "inf"), ("-Infinity", "inf"), ("9007199254740993", "safe integer")],
)
def test_values_json_cannot_represent_exactly(tmp_path: Path, value: str, word: str) -> None:
    f = tmp_path / "train.jsonl"
    f.write_text(f'{{"ok": 1}}\n{{"loss": {value}}}\n')
    with pytest.raises(InputError, match="cannot be canonicalized") as info:
        hash_dataset(f)
    assert info.value.line == 2
    assert word in str(info.value)
    assert "remove NaN/Infinity" in str(info.value)


def test_parquet_is_hashed_as_a_whole_file(tmp_path: Path) -> None:
    import pyarrow as pa  # installed with datasets (the [hf] extra): missing means a broken env, not a skip
    import pyarrow.parquet as pq

    f = tmp_path / "train.parquet"
    pq.write_table(pa.table({"text": ["a", "b", "c"]}), f)
    d = hash_dataset(f)
    assert d.format == "parquet"
    assert d.sha256 == hashlib.sha256(f.read_bytes()).hexdigest()
    assert (d.records, d.merkle_root, d.record_digests) == (None, None, [])
    assert "records" not in d.as_dict() and "merkle_root" not in d.as_dict()
    with pytest.raises(InputError, match="no per-record digests"):
        d.proof(0)


@pytest.mark.parametrize("name", ["train.csv", "train.arrow", "README"])
def test_other_formats_are_whole_file_only(tmp_path: Path, name: str) -> None:
    f = tmp_path / name
    f.write_bytes(b"text\nhello\n")
    d = hash_dataset(f)
    assert d.records is None
    assert d.format == (Path(name).suffix.lstrip(".") or "bin")
    assert d.sha256 == hashlib.sha256(b"text\nhello\n").hexdigest()


def test_empty_jsonl_has_zero_records(tmp_path: Path) -> None:
    f = tmp_path / "empty.jsonl"
    f.write_bytes(b"")
    d = hash_dataset(f)
    assert d.records == 0
    assert d.merkle_root == hashlib.sha256(b"").hexdigest()


def test_missing_and_directory_datasets(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="dataset file not found") as info:
        hash_dataset(tmp_path / "nope.jsonl")
    assert info.value.path == tmp_path / "nope.jsonl"
    with pytest.raises(InputError, match="is a directory"):
        hash_dataset(tmp_path)


def test_overlap_counts_eval_records_present_in_train(tmp_path: Path) -> None:
    train = [{"q": f"question {i}", "a": str(i)} for i in range(10)]
    # Two eval records leak from train (one re-serialized with other key order), three are new.
    eval_ = [{"a": "3", "q": "question 3"}, train[7], *({"q": f"new {i}", "a": "x"} for i in range(3))]
    t = hash_dataset(write_jsonl(tmp_path / "train.jsonl", train))
    e = hash_dataset(write_jsonl(tmp_path / "eval.jsonl", eval_, sort_keys=True), role="eval")
    assert overlap(t, e) == 2
    assert overlap(e, t) == 2
    assert overlap(t, hash_dataset(write_jsonl(tmp_path / "none.jsonl", [{"z": 1}]))) == 0
    assert isinstance(e, DatasetDigest) and e.role == "eval"


# --- the fast canonical path (C json encoder) must be byte-identical to rfc8785 --------------------

# Characters where JSON escaping or UTF-16 key ordering could differ: controls, quote, backslash, DEL,
# line/paragraph separators, the top of the BMP, private use area, and astral characters.
TRICKY = '\x00\x01\x08\x09\x0a\x0c\x0d\x1f "\\/\x7f\u2028\u2029\ud7ff\ue000\ufb33\ufeff\uffff\U0001f600\U00010000aé'
tricky_text = st.text(alphabet=st.sampled_from(TRICKY), max_size=6)
exact_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    | st.sampled_from([0, -1, 10**15 - 1, 2**53 - 1, -(2**53) + 1])
    | tricky_text,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(tricky_text, c, max_size=5),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(record=exact_values, ascii_escaped=st.booleans())
def test_fast_canonical_path_is_byte_identical_to_rfc8785(record: Any, ascii_escaped: bool) -> None:
    from bastion.provenance.datasets import _Canonicalizer

    canon = _Canonicalizer(Path("x.jsonl"))
    raw = json.dumps(record, ensure_ascii=ascii_escaped).encode()
    parsed, fast = canon.decode(1, raw)
    assert canon.canonical(parsed, fast, 1) == rfc8785.dumps(record)


def test_fast_path_is_taken_for_plain_chat_records() -> None:
    from bastion.provenance.datasets import _Canonicalizer

    canon = _Canonicalizer(Path("x.jsonl"))
    for r in (CHAT[1], {"messages": [{"role": "user", "content": "Grüße, \u00e9t\u00e9\n\ttabs"}], "id": 7}):
        assert canon.decode(1, json.dumps(r).encode())[1] is True
    # Floats, long digit runs and astral characters send a record through rfc8785 itself.
    for text in ('{"a": 1.5}', '{"a": 1e3}', '{"id": 12345678901234567}', '{"a": "\\ud83d\\ude00"}', '{"a": "😀"}'):
        assert canon.decode(1, text.encode())[1] is False


@pytest.mark.parametrize(
    "line",
    [
        '{"\ufb33": 1, "\U0001f600": 2}',  # UTF-16 order differs from code-point order
        '{"\\ufb33": 1, "\\ud83d\\ude00": 2}',
        '{"loss": 1.0, "lr": 1e-7, "big": 1e21}',  # ECMAScript number forms
        '{"n": 9007199254740991}',
    ],
)
def test_records_needing_rfc8785_match_it(tmp_path: Path, line: str) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text(line + "\n", encoding="utf-8")
    assert hash_dataset(f).record_digests == [hashlib.sha256(rfc8785.dumps(json.loads(line))).hexdigest()]


def test_bom_and_deep_nesting_are_clear_errors(tmp_path: Path) -> None:
    f = tmp_path / "bom.jsonl"
    f.write_bytes(b'\xef\xbb\xbf{"a": 1}\n')
    with pytest.raises(InputError, match="BOM") as info:
        hash_dataset(f)
    assert info.value.line == 1
    deep = tmp_path / "deep.jsonl"
    deep.write_text('{"ok": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(InputError, match="nested too deeply") as info:
        hash_dataset(deep)
    assert info.value.line == 2


def test_a_pipe_is_not_a_dataset(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "train.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        hash_dataset(fifo)


def test_progress_is_reported_in_blocks_not_per_record(tmp_path: Path) -> None:
    from bastion.provenance.hashing import BLOCK_SIZE

    f = write_jsonl(tmp_path / "many.jsonl", [{"i": i} for i in range(200_000)])
    seen: list[int] = []
    d = hash_dataset(f, progress=seen.append)
    assert d.records == 200_000
    assert sum(seen) == f.stat().st_size
    assert len(seen) <= f.stat().st_size // BLOCK_SIZE + 1
