"""IPv4 addresses written defanged ("81[.]2[.]69[.]160"), as threat reports and security tickets write them,
are found as IP addresses and redacted as written, by either pre-filter."""

from __future__ import annotations

import json

import pytest
from detector_helpers import BOTH_PRE_FILTERS, EU_PACK, EU_PACK_RE, assert_raw_line_passes_findings, pack_found
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.policies import JsonlScanner, PolicyEngine


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("attacker ip 81[.]2[.]69[.]160 seen twice", "81[.]2[.]69[.]160"),
        ("src=81(.)2(.)69(.)160,", "81(.)2(.)69(.)160"),
        ("from 81[dot]2[dot]69[dot]160.", "81[dot]2[dot]69[dot]160"),
        ("IOC: 81 [.] 2 [.] 69 [.] 160", "81 [.] 2 [.] 69 [.] 160"),
        ("host 81.2.69[.]160:8080", "81.2.69[.]160"),
        ('ip "81[.]2[.]69[.]160"', "81[.]2[.]69[.]160"),
    ],
)
@BOTH_PRE_FILTERS
def test_a_defanged_address_is_found_as_written(text: str, value: str, engine: PolicyEngine) -> None:
    assert pack_found(text, engine) == [("IP_ADDRESS", value)]


@pytest.mark.parametrize(
    "text",
    [
        "see [.] 2 [.] 3",
        "ip 10[.]0[.]0[.]1",  # private: the pack leaves private addresses alone, written either way
        "oid 1[.]3[.]6[.]1[.]4[.]1",
        "version v1[.]2[.]3[.]4",
        "81[.]2[.]69[.]999",
        "ranges 1(.)2 and 3(.)4",
    ],
)
def test_what_is_no_public_address_is_left_alone(text: str) -> None:
    assert pack_found(text) == []


def test_the_record_is_redacted_in_a_jsonl_file_by_either_pre_filter() -> None:
    line = json.dumps({"messages": [{"role": "user", "content": "blocked 81[.]2[.]69[.]160 today"}]}) + "\n"
    for engine in (EU_PACK, EU_PACK_RE):
        scanner = JsonlScanner(engine, source="t.jsonl")
        out = scanner.feed(line.encode()) + scanner.finish()
        assert json.loads(out)["messages"][0]["content"] == "blocked [IP_ADDRESS] today"
        assert scanner.summary.entity_counts == {"IP_ADDRESS": 1}


_pieces = st.sampled_from(
    ["81", "2", "69", "160", "8", ".", "[.]", "(.)", "{.}", "[dot]", " [.] ", "[", "]", "(", ")", " ", "x", "v",
     "81[.]2[.]69[.]160", "8.8.8[.]8", "\\n", '"', ":"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=20).map("".join))
@example("81[.]2[.]69[.]160")
@example("8 [dot] 8 [dot] 8 [dot] 8")
def test_the_raw_line_pre_filters_pass_every_line_with_such_an_address(text: str) -> None:
    assert_raw_line_passes_findings(text)
