"""The streaming multipart/form-data reader (gateway/multipart.py) on its own."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bastion.gateway.errors import Refusal
from bastion.gateway.multipart import MAX_BOUNDARY_BYTES, FormReader, PartInfo, Sink


class _Bytes:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True


def _open(part: PartInfo) -> Sink:
    return _Bytes()


@pytest.mark.parametrize("length", [MAX_BOUNDARY_BYTES + 1, 1000, 100_000])
def test_an_over_long_boundary_is_a_400_refusal(length: int) -> None:
    with pytest.raises(Refusal) as info:
        FormReader(f"multipart/form-data; boundary={'b' * length}", _open)
    assert info.value.status == 400
    assert f"{length} bytes long" in str(info.value)


def test_the_longest_accepted_boundary_works() -> None:
    b = "b" * MAX_BOUNDARY_BYTES
    body = f'--{b}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n--{b}--\r\n'.encode()
    reader = FormReader(f"multipart/form-data; boundary={b}", _open)
    reader.write(body)
    reader.finish()
    assert reader.fields == {"purpose": "fine-tune"}


# --- chunking never changes the outcome -----------------------------------------------------------


BOUNDARY = "XyZ123"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def outcome(body: bytes, cuts: list[int]) -> tuple[object, ...]:
    """What reading ``body`` cut at ``cuts`` gives: fields and file bytes, or the refusal's status and message."""
    sinks: list[tuple[PartInfo, _Bytes]] = []

    def open_file(part: PartInfo) -> Sink:
        sink = _Bytes()
        sinks.append((part, sink))
        return sink

    reader = FormReader(CTYPE, open_file)
    edges = [0, *sorted({c for c in cuts if 0 < c < len(body)}), len(body)]
    try:
        for a, b in itertools.pairwise(edges):
            reader.write(body[a:b])
        reader.finish()
    except Refusal as exc:
        return ("refused", exc.status, str(exc))
    files = [(p.name, p.filename, p.content_type, bytes(s.data), s.closed) for p, s in sinks]
    return ("ok", reader.fields, reader.field_order, files)


_piece = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b"--",
        f"--{BOUNDARY}".encode(),
        f"\r\n--{BOUNDARY}\r\n".encode(),
        f"\r\n--{BOUNDARY}--".encode(),
        f"--{BOUNDARY}--\r\n".encode(),
        b'Content-Disposition: form-data; name="a"\r\n\r\n',
        b'Content-Disposition: form-data; name="f"; filename="x.jsonl"\r\nContent-Type: text/plain\r\n\r\n',
        b"Content-Type: a\nb\r\n",
        b" \t",
        b"x",
        b"XyZ12",
        b"\r\n--XyZ12",
        b":",
        b"\xff",
    ]
) | st.binary(max_size=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_piece, max_size=14).map(b"".join), st.lists(st.integers(0, 200), max_size=12))
@example(b"\r\nx\r\n--XyZ123--\r\n", [])
@example(b"\r\nx\r\n--XyZ123--\r\n", list(range(20)))
def test_any_chunking_gives_the_outcome_of_one_chunk(body: bytes, cuts: list[int]) -> None:
    assert outcome(body, cuts) == outcome(body, [])
    assert outcome(body, list(range(len(body)))) == outcome(body, [])


def test_the_issue_example_is_accepted_in_one_chunk_and_byte_by_byte() -> None:
    body = b"\r\nx\r\n--XyZ123--\r\n"
    assert outcome(body, []) == outcome(body, list(range(len(body)))) == ("ok", {}, [], [])


def test_error_positions_count_from_the_start_of_the_body() -> None:
    body = f"--{BOUNDARY}\r\nBad Header: x\r\n\r\n".encode()
    expected = ("refused", 400)
    for cuts in ([], list(range(len(body))), [20], [5, 13]):
        got = outcome(body, cuts)
        assert got[:2] == expected
        assert "at byte 14:" in str(got[2]), got  # the space in "Bad Header": the 14th byte of the body


def test_a_preamble_is_skipped_up_to_a_limit() -> None:
    part = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--{BOUNDARY}--\r\n'.encode()
    assert outcome(b"some preamble\r\n" + part, [3]) == ("ok", {"a": "1"}, ["a"], [])
    long = b"p" * (70 * 1024) + b"\r\n" + part
    got = outcome(long, [])
    assert got[:2] == ("refused", 400) and "does not start with its boundary" in str(got[2])
    assert outcome(long, list(range(0, len(long), 1000))) == got
