"""The raw-line pre-filter with context detectors on: a JSONL line goes the fast way (not decoded) only when
the name, address and date-of-birth detectors find nothing in it; JSON escapes never hide a value."""

from __future__ import annotations

import json

import pytest

from bastion.policies import JsonlScanner, PolicyEngine, load_policy


@pytest.fixture(params=["re", "hyperscan"])
def engine(request: pytest.FixtureRequest) -> PolicyEngine:
    if request.param == "hyperscan":
        pytest.importorskip("hyperscan", reason="hyperscan is not installed")
    return PolicyEngine(load_policy("pack:eu-gdpr"), prefilter=request.param)


def _scan(engine: PolicyEngine, record: object) -> tuple[bytes, bytes]:
    line = json.dumps(record, ensure_ascii=False).encode() + b"\n"
    scanner = JsonlScanner(engine, source="t.jsonl")
    return line, scanner.feed(line) + scanner.finish()


# (record, text that must be gone from the output): values whose context sits across a JSON escape
HIDDEN = [
    ({"messages": [{"role": "user", "content": "Kind regards,\nAnna Lis"}]}, "Anna Lis"),
    ({"messages": [{"role": "user", "content": "Name:\tJan Kowalski"}]}, "Jan Kowalski"),
    ({"messages": [{"role": "user", "content": 'She said "born\n12.03.1985"'}]}, "12.03.1985"),
    ({"messages": [{"role": "user", "content": "Lieferadresse:\nHauptstraße 12\n10115 Berlin"}]}, "Hauptstraße 12"),
    ({"tool": json.dumps({"name": "Herr Thomas Müller"}, ensure_ascii=False)}, "Thomas Müller"),  # nested JSON string
    (
        {"tool": json.dumps({"note": json.dumps({"who": "Frau Anna Weber"})}, ensure_ascii=False)},
        "Anna Weber",
    ),  # twice nested
    ({"messages": [{"role": "user", "content": "geb.\u00a012.03.1985"}]}, "12.03.1985"),  # a view character
    ({"messages": [{"role": "user", "content": "path C:\\x\\y, Dr. Eva Nowak"}]}, "Eva Nowak"),  # backslashes
]


@pytest.mark.parametrize(("record", "secret"), HIDDEN, ids=[f"case{i}" for i in range(len(HIDDEN))])
def test_values_behind_escapes_are_redacted(engine: PolicyEngine, record: object, secret: str) -> None:
    line, out = _scan(engine, record)
    assert secret.encode() in line
    assert secret.encode() not in out


def test_lines_with_nothing_take_the_fast_path(engine: PolicyEngine) -> None:
    record = {"messages": [{"role": "user", "content": "Please summarise the quarterly report in three bullets."}]}
    line, out = _scan(engine, record)
    assert out == line
    check = engine.line_checker()
    text = line.decode().rstrip("\n")
    assert check(text, text.encode()) is False  # not decoded at all
    named = json.dumps({"messages": [{"role": "user", "content": "Dear Mr Vojtěch Dvořák,"}]}, ensure_ascii=False)
    assert check(named, named.encode()) is True
