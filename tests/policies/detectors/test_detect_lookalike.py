"""Numbers with letters that look like digits (O for 0, l or I for 1) are read with them as digits."""

from __future__ import annotations

import json

import pytest
from detector_helpers import BOTH_PRE_FILTERS, EU_PACK, EU_PACK_RE, assert_raw_line_passes_findings, pack_found
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.policies import JsonlScanner, PolicyEngine
from bastion.policies.detectors import lookalike

LOOKALIKES = [
    ("call O2O 7946 O958 today", "PHONE", "O2O 7946 O958"),
    ("Tel: +49 3O 9O182O", "PHONE", "+49 3O 9O182O"),
    ("Tel 0l7l 234 5678", "PHONE", "0l7l 234 5678"),
    ("card 4lll 1lll 1lll 1lll", "PAYMENT_CARD", "4lll 1lll 1lll 1lll"),
    ("card 4111 1111 1111 111l", "PAYMENT_CARD", "4111 1111 1111 111l"),
    ("card 4III-IIII-IIII-IIII", "PAYMENT_CARD", "4III-IIII-IIII-IIII"),
    ("IBAN DE89 37O4 OO44 O532 O13O OO", "IBAN", "DE89 37O4 OO44 O532 O13O OO"),
    ("IBAN DE89 3704 0044 0532 0130 0O", "IBAN", "DE89 3704 0044 0532 0130 0O"),
    ("SSN 536-9O-4399", "NATIONAL_ID", "536-9O-4399"),
    # IBANs whose bank code's letters break the run of digits: read by their country's format
    ("IBAN GBO4 VFDZ 4956 2553 5285 43", "IBAN", "GBO4 VFDZ 4956 2553 5285 43"),
    ("IBAN GB82 WEST l234 5698 7654 32.", "IBAN", "GB82 WEST l234 5698 7654 32"),
    ("pay to GB82WESTl2345698765432 today", "IBAN", "GB82WESTl2345698765432"),
    # letter-led codes: the look-alike letters where their digits stand
    ("NIE Yl979229R", "NATIONAL_ID", "Yl979229R"),
    ("NIE X248230O-W.", "NATIONAL_ID", "X248230O-W"),
    ("CF RCCMNL83Sl8D969H", "NATIONAL_ID", "RCCMNL83Sl8D969H"),
]


@pytest.mark.parametrize(("text", "entity", "value"), LOOKALIKES)
@BOTH_PRE_FILTERS
def test_a_number_with_look_alike_letters_is_found_as_its_digits(
    text: str, entity: str, value: str, engine: PolicyEngine
) -> None:
    assert pack_found(text, engine) == [(entity, value)]


@pytest.mark.parametrize(
    "text",
    [
        "Hello 1O2O 3O4O",  # "llo" is glued to "He": not part of the run; what is left is no number
        "I 1O2O 3O4O",  # the pronoun is no digit
        "buy 10l of water and 2O bottles",
        "lol lol lol lol",
        "SN 1O2O3O4O5",
        "version 1O.2O.3O",
        "the 2O2O-2O21 season",  # read as 2020-2021: a range of years, as in digits
        "card 4111 llll 1111 1111",  # no letter right beside a digit: not read (the pre-filters' condition)
        "GB82 WEST l234 5698 7654 33",  # the IBAN's check fails
        "XGB82 WEST l234 5698 7654 32",  # glued to a letter
        "GB82 WEST l234 5698 7654 32l",  # a character more than a British IBAN has
        "NIE X248230OA",  # the check letter is wrong
        "ref AX248230OW",  # glued to a letter
    ],
)
def test_letters_that_make_no_number_are_left_alone(text: str) -> None:
    assert pack_found(text) == []


def test_read_drops_end_groups_without_digits_and_groups_glued_to_letters() -> None:
    text = "I 1O2O 3O4O 5O6O ll"
    run = lookalike.read(text, 0, len(text))
    assert run is not None
    assert text[run.start : run.end] == "1O2O 3O4O 5O6O"
    assert run.number == "1020 3040 5060"
    assert lookalike.read("Hello1O2O3O4O", 4, 13) is None  # glued to "Hel" and nothing else left


def test_the_record_is_redacted_in_a_jsonl_file_by_either_pre_filter() -> None:
    line = json.dumps({"messages": [{"role": "user", "content": "call me on O2O 7946 O958, thanks"}]}) + "\n"
    for engine in (EU_PACK, EU_PACK_RE):
        scanner = JsonlScanner(engine, source="t.jsonl")
        out = scanner.feed(line.encode()) + scanner.finish()
        assert json.loads(out)["messages"][0]["content"] == "call me on [PHONE], thanks"


_pieces = st.sampled_from(
    ["O", "o", "I", "l", "0", "4", "1", "2", " ", "-", "/", ".", "x", "Tel ", "card ", "+49 ", "\\n", "\n", '"',
     "\u00e9", "O2O 7946 O958", "4lll 1lll 1lll 1lll", "DE89 37O4 OO44 O532 O13O OO", "GB", "WEST",
     "GBO4 VFDZ 4956 2553 5285 43", "Yl979229R", "RCCMNL83Sl8D969H"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=25).map("".join))
@example("Tel O2O 7946 O958")
@example('card "4lll 1lll 1lll 1lll"')
@example("IBAN\nDE89 37O4 OO44 O532 O13O OO")
@example("IBAN GBO4 VFDZ 4956 2553 5285 43")
def test_the_raw_line_pre_filters_pass_every_line_with_a_look_alike_finding(text: str) -> None:
    assert_raw_line_passes_findings(text)
