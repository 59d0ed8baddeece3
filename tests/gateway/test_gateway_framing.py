"""Property tests for the gateway's framing: streaming multipart parsing, re-framing, record checking."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.adapters.openai.records import RecordChecker, record_problem
from bastion.gateway.errors import Refusal
from bastion.gateway.multipart import FormReader, PartInfo
from bastion.gateway.spool import MultipartBody, Spool

field_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_[]", min_size=1, max_size=12)
field_values = st.text(max_size=40)
file_bytes = st.binary(max_size=3000)


def encode(fields: dict[str, str], filename: str, content: bytes, boundary: str = "b0UnD4ry") -> bytes:
    out = bytearray()
    for k, v in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n'.encode() + v.encode() + b"\r\n"
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    out += content + f"\r\n--{boundary}--\r\n".encode()
    return bytes(out)


class Collect:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    chunks, prev = [], 0
    for p in [*points, len(data)]:
        chunks.append(data[prev:p])
        prev = p
    return chunks


def parse(body: bytes, cuts: list[int]) -> tuple[FormReader, Collect]:
    sink = Collect()

    def open_file(part: PartInfo) -> Collect:
        assert part.name == "file"
        return sink

    reader = FormReader("multipart/form-data; boundary=b0UnD4ry", open_file)
    for chunk in split(body, cuts):
        reader.write(chunk)
    reader.finish()
    return reader, sink


@given(
    fields=st.dictionaries(field_names.filter(lambda n: n != "file"), field_values, max_size=4),
    content=file_bytes,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
@settings(max_examples=150, deadline=None)
def test_multipart_roundtrip_any_chunking(fields: dict[str, str], content: bytes, cuts: list[int]) -> None:
    reader, sink = parse(encode(fields, "t.jsonl", content), cuts)
    assert reader.fields == fields
    assert bytes(sink.data) == content and sink.closed
    assert reader.files[0].filename == "t.jsonl"


@given(content=file_bytes, cut=st.integers(min_value=0))
@settings(max_examples=150, deadline=None)
def test_truncated_multipart_always_refused(content: bytes, cut: int) -> None:
    body = encode({"purpose": "fine-tune"}, "t.jsonl", content)
    truncated = body[: cut % (len(body) - 2)]  # anything short of the final "--\r\n" minus CRLF
    with pytest.raises(Refusal) as info:
        parse(truncated, [])
    assert info.value.status == 400


@given(
    fields=st.lists(st.tuples(field_names, field_values), max_size=4, unique_by=lambda t: t[0]),
    content=file_bytes,
    filename=st.text(max_size=20),
)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reframed_body_has_exact_length_and_parses_back(
    tmp_path: Path, fields: list[tuple[str, str]], content: bytes, filename: str
) -> None:
    fields = [(k, v) for k, v in fields if k != "file"]
    spool = Spool(tmp_path)
    spool.write(content)
    body = MultipartBody(fields, "file", filename, "application/jsonl", spool)

    async def collect() -> bytes:
        return b"".join([c async for c in body.aiter()])

    raw = asyncio.run(collect())
    spool.discard()
    assert len(raw) == body.content_length
    sink = Collect()
    reader = FormReader(body.content_type, lambda part: sink)
    reader.write(raw)
    reader.finish()
    assert reader.fields == dict(fields)
    assert bytes(sink.data) == content


records = st.one_of(
    st.builds(
        lambda u, a: {"messages": [{"role": "user", "content": u}, {"role": "assistant", "content": a}]},
        st.text(max_size=30),
        st.text(max_size=30),
    ),
    st.builds(lambda p, c: {"prompt": p, "completion": c}, st.text(max_size=20), st.text(max_size=20)),
    st.builds(lambda t: {"text": t}, st.text(max_size=20)),
)


@given(recs=st.lists(records, min_size=1, max_size=20), cuts=st.lists(st.integers(min_value=0), max_size=10))
@settings(max_examples=150, deadline=None)
def test_record_checker_independent_of_chunking(recs: list[dict[str, object]], cuts: list[int]) -> None:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in recs)
    checker = RecordChecker()
    for chunk in split(data, cuts):
        checker.feed(chunk)
    checker.finish()
    bad = [i + 1 for i, r in enumerate(recs) if record_problem(r) is not None]
    if bad:
        assert checker.problem is not None and checker.problem[0] == bad[0]
    else:
        assert checker.problem is None and checker.records == len(recs)


def test_record_formats() -> None:
    msgs = [{"role": "user", "content": "q"}]
    assert record_problem({"messages": msgs}) is None
    assert record_problem({"messages": msgs, "reference_answer": "x"}) is None  # reinforcement extra fields
    assert record_problem({"input": {"messages": msgs}, "preferred_output": msgs, "non_preferred_output": msgs}) is None
    assert "non_preferred_output" in (record_problem({"input": {"messages": msgs}, "preferred_output": msgs}) or "")
    assert "role" in (record_problem({"messages": [{"role": "wizard", "content": "x"}]}) or "")
    assert record_problem([1, 2]) == "each line must be a JSON object"
