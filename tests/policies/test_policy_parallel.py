"""Parallel scan (``bastion scan --jobs N``): for any file and any number of jobs, the redacted output, the
summary and the errors are exactly those of one JsonlScanner over the whole file, and nothing is left behind."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_helpers import scan_bytes

from bastion.policies import PolicyEngine, ScanError, ScanSummary, policy_from_mapping
from bastion.policies.parallel import plan, scan_file

POLICY = {
    "name": "t",
    "classifications": ["public", "internal", "personal", "secret"],
    "default_classification": "internal",
    "detectors": [
        {"id": "email", "type": "email", "action": "redact", "classification": "personal"},
        {"id": "iban", "type": "iban", "action": "block", "classification": "secret"},
        {"id": "ip", "type": "ip_address", "action": "allow", "classification": "personal"},
    ],
}

PII = '{"messages":[{"role":"user","content":"mail ana@example.es or bo@example.de"}]}'
BLOCK = '{"messages":[{"role":"user","content":"IBAN DE89 3704 0044 0532 0130 00"}]}'
ALLOWED = '{"k": "server 8.8.8.8"}'
CLEAN = '{"messages":[{"role":"user","content":"Grüße aus München 🎉"}], "n": 1.50}'


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(policy_from_mapping(POLICY))


def _lines(*lines: str, end: str = "\n") -> bytes:
    return "".join(line + end for line in lines).encode("utf-8")


def _parallel(engine: PolicyEngine, path: Path, jobs: int, **kw: Any) -> tuple[bytes, ScanSummary]:
    out = io.BytesIO()
    summary = scan_file(engine, path, jobs=jobs, out=out, source="t.jsonl", temp_dir=path.parent, **kw)
    return out.getvalue(), summary


def _same_as_one_scanner(engine: PolicyEngine, tmp_path: Path, data: bytes, jobs: int, **kw: Any) -> ScanSummary:
    path = tmp_path / "d.jsonl"
    path.write_bytes(data)
    want_out, want = scan_bytes(engine, data, **kw)
    got_out, got = _parallel(engine, path, jobs, **kw)
    assert got_out == want_out
    assert got.as_dict() == want.as_dict()
    assert got.complete
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]  # part outputs removed
    return got


FILES = {
    "pii-dense": _lines(*[PII, BLOCK, ALLOWED, PII] * 6),
    "clean": _lines(*[CLEAN] * 20),
    "blocked": _lines(CLEAN, BLOCK, CLEAN, BLOCK, PII, BLOCK),
    "blank-lines": _lines(PII, "", "  ", CLEAN, "", "", "", "", "", "", BLOCK, "", PII),
    "no-trailing-newline": _lines(CLEAN, PII, CLEAN, PII)[:-1],
    "crlf": _lines(PII, CLEAN, BLOCK, PII, end="\r\n"),
    "fewer-lines-than-jobs": _lines(PII, BLOCK),
    "one-line": _lines(PII)[:-1],
    "bom-first-line": b"\xef\xbb\xbf" + _lines(PII, CLEAN, PII, CLEAN),
}


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("jobs", [1, 2, 3, 7])
def test_output_and_summary_equal_one_scanner(engine: PolicyEngine, tmp_path: Path, name: str, jobs: int) -> None:
    _same_as_one_scanner(engine, tmp_path, FILES[name], jobs)


def test_record_numbers_offset_by_earlier_parts(engine: PolicyEngine, tmp_path: Path) -> None:
    got = _same_as_one_scanner(engine, tmp_path, FILES["blank-lines"], 3)
    assert got.blocked_records == [3]
    assert [(d.record, d.line) for d in got.details] == [(1, 1), (3, 11), (4, 13)]
    assert got.classification == "internal"
    # an allowed finding in the last part raises the classification of the whole file
    got = _same_as_one_scanner(engine, tmp_path, _lines(*[CLEAN] * 9, "", ALLOWED), 3)
    assert got.classification == "personal" and [(d.record, d.line) for d in got.details] == [(10, 11)]


def test_caps_on_details_and_blocked_list_as_one_scanner(engine: PolicyEngine, tmp_path: Path) -> None:
    data = _lines(*[BLOCK, PII, CLEAN] * 5)
    got = _same_as_one_scanner(engine, tmp_path, data, 4, max_details=3, max_blocked_listed=2)
    assert got.details_truncated and len(got.details) == 3
    assert got.blocked_records == [1, 4] and got.blocked_records_total == 5


def test_parts_start_at_line_starts(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    data = _lines(*[CLEAN] * 10, "", PII)
    path.write_bytes(data)
    parts, _ = plan(path, 4)
    assert len(parts) == 4 and parts[0].start == 0 and parts[-1].end == len(data)
    for before, after in itertools.pairwise(parts):
        assert before.end == after.start and data[after.start - 1 : after.start] == b"\n"
        assert after.line_offset == data[: after.start].count(b"\n")


def _error(fn: Any) -> ScanError:
    with pytest.raises(ScanError) as info:
        fn()
    return info.value


@pytest.mark.parametrize(
    ("bad", "kw"),
    [
        (b'{"a": \n', {}),  # not JSON
        (b'{"a": "x@example.de", "a": 2}\n', {}),  # duplicate key (checked where a candidate is)
        (b'{"a": "\xff"}\n', {}),  # not UTF-8
        (b"\xef\xbb\xbf" + _lines(CLEAN), {}),  # a byte order mark is accepted on line 1 only
        (_lines('{"a": "' + "x" * 300 + '"}'), {"max_line_bytes": 200}),
    ],
)
def test_error_names_the_same_line_and_record(
    engine: PolicyEngine, tmp_path: Path, bad: bytes, kw: dict[str, Any]
) -> None:
    data = _lines(*[PII, "", CLEAN] * 4) + bad + _lines(*[CLEAN, BLOCK] * 4) + bad
    path = tmp_path / "d.jsonl"
    path.write_bytes(data)
    want = _error(lambda: scan_bytes(engine, data, **kw))
    assert want.line == 13
    got = _error(lambda: _parallel(engine, path, 3, **kw))
    assert (str(got), got.line, got.record, got.hint) == (str(want), want.line, want.record, want.hint)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.jsonl"]


@pytest.mark.parametrize("data", [b"", b"\n\n  \n\r\n\n"])
def test_no_records_error_as_one_scanner(engine: PolicyEngine, tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(data)
    want = _error(lambda: scan_bytes(engine, data))
    got = _error(lambda: _parallel(engine, path, 3))
    assert str(got) == str(want)


_LINE = st.sampled_from([PII, BLOCK, ALLOWED, CLEAN, "", " ", '{"x": 1e5}', '["a@b.de", 1]'])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(_LINE, min_size=1, max_size=12),
    crlf=st.booleans(),
    trailing=st.booleans(),
    jobs=st.integers(min_value=2, max_value=5),
)
def test_random_files_scan_as_one_scanner(
    engine: PolicyEngine,
    tmp_path_factory: pytest.TempPathFactory,
    lines: list[str],
    crlf: bool,
    trailing: bool,
    jobs: int,
) -> None:
    data = _lines(*lines, end="\r\n" if crlf else "\n")
    if not trailing:
        data = data.rstrip(b"\r\n")
    tmp = tmp_path_factory.mktemp("h")
    if all(not line.strip() for line in lines):
        path = tmp / "d.jsonl"
        path.write_bytes(data)
        assert str(_error(lambda: _parallel(engine, path, jobs))) == str(_error(lambda: scan_bytes(engine, data)))
        return
    _same_as_one_scanner(engine, tmp, data, jobs)


def test_summary_json_is_serialisable(engine: PolicyEngine, tmp_path: Path) -> None:
    got = _same_as_one_scanner(engine, tmp_path, FILES["pii-dense"], 3)
    assert json.loads(json.dumps(got.as_dict()))["records"] == 24
