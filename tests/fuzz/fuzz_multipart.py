#!/usr/bin/env python3
"""Fuzz the streaming multipart/form-data reader (gateway/multipart.py): any chunking = one chunk.

Input: how many cut points and where (FuzzedDataProvider), then the body. The body is read in one
chunk, at the cut points and byte by byte; all three must give the same fields, file bytes and
refusal (same status and message, positions included). Any exception other than a Refusal is a crash.

    python tests/fuzz/fuzz_multipart.py -max_total_time=60 -dict=tests/fuzz/multipart.dict \\
        /tmp/corpus tests/fuzz/corpus/multipart
"""

from __future__ import annotations

import itertools
import sys

import atheris

# Only the code under test is instrumented (coverage feedback where it matters, a fast start).
with atheris.instrument_imports(include=["bastion.gateway.multipart", "python_multipart"]):
    from bastion.gateway.errors import Refusal
    from bastion.gateway.multipart import FormReader, PartInfo, Sink

CTYPE = "multipart/form-data; boundary=XyZ123"


class _Collect:
    def __init__(self) -> None:
        self.data = bytearray()
        self.closed = 0

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed += 1


def outcome(body: bytes, cuts: list[int]) -> tuple[object, ...]:
    sinks: list[tuple[PartInfo, _Collect]] = []

    def open_file(part: PartInfo) -> Sink:
        if part.filename == "refuse.jsonl":
            raise Refusal(400, "invalid_upload", "refused by the sink")
        sink = _Collect()
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
    files = [(p.name, p.filename, p.content_type, sorted(p.headers.items()), bytes(s.data), s.closed) for p, s in sinks]
    return ("ok", sorted(reader.fields.items()), reader.field_order, files)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    cuts = [fdp.ConsumeIntInRange(0, 600) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    whole = outcome(body, [])
    chunked = outcome(body, cuts)
    if chunked != whole:
        raise AssertionError(f"cuts {cuts} change the outcome:\n one chunk: {whole}\n chunked:   {chunked}")
    if len(body) <= 2048:
        bytewise = outcome(body, list(range(len(body))))
        if bytewise != whole:
            raise AssertionError(f"byte by byte changes the outcome:\n one chunk: {whole}\n bytewise:  {bytewise}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
