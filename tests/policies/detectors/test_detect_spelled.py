"""Numbers spelled out digit by digit in words are read as the digits they spell and validated as those."""

from __future__ import annotations

import json

import pytest
from detector_helpers import BOTH_PRE_FILTERS, EU_PACK, EU_PACK_RE, assert_raw_line_passes_findings, pack_found
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.policies import JsonlScanner, PolicyEngine
from bastion.policies.detectors import spelled

CARD_EN = "four one one one one one one one one one one one one one one one"
IBAN_EN = "eight nine three seven zero four zero zero four four zero five three two zero one three zero zero zero"

SPELLED = [
    (f"my card is {CARD_EN} thanks", "PAYMENT_CARD", CARD_EN),
    (f"MY CARD IS {CARD_EN.upper()}", "PAYMENT_CARD", CARD_EN.upper()),
    ("Karte: vier eins eins eins eins eins eins eins eins eins eins eins eins eins eins eins", "PAYMENT_CARD",
     "vier eins eins eins eins eins eins eins eins eins eins eins eins eins eins eins"),
    ("carte quatre un un un un un un un un un un un un un un un.", "PAYMENT_CARD",
     "quatre un un un un un un un un un un un un un un un"),
    ("card four-one-one-one one-one-one-one one-one-one-one one-one-one-one", "PAYMENT_CARD",
     "four-one-one-one one-one-one-one one-one-one-one one-one-one-one"),
    ("card four one one one 1111 1111 1111", "PAYMENT_CARD", "four one one one 1111 1111 1111"),  # mixed
    ("card four double one one triple one 111 1111 11", "PAYMENT_CARD", "four double one one triple one 111 1111 11"),
    ("call me on zero one seven six double two three four five six seven", "PHONE",
     "zero one seven six double two three four five six seven"),
    ("plus four nine three zero nine zero one eight two zero", "PHONE",
     "plus four nine three zero nine zero one eight two zero"),
    ("SSN five three six nine zero four three nine nine", "NATIONAL_ID",
     "five three six nine zero four three nine nine"),
    # an IBAN read aloud: its country code in letters, then its digits
    (f"IBAN DE {IBAN_EN} thanks", "IBAN", f"DE {IBAN_EN}"),
    (f"the DE {IBAN_EN} seven seven", "IBAN", f"DE {IBAN_EN}"),  # the longest valid IBAN, not what follows it
    ("Konto: D E acht neun drei sieben null vier null null vier vier null fünf drei zwei null eins drei null null "
     "null, danke", "IBAN",
     "D E acht neun drei sieben null vier null null vier vier null fünf drei zwei null eins drei null null null"),
    # with the letters of a bank code, as a word or spelled apart (a call-centre transcript)
    ("my IBAN is G B eight two W E S T one two three four five six nine eight seven six five four three two",
     "IBAN", "G B eight two W E S T one two three four five six nine eight seven six five four three two"),
    ("NL nine one ABNA zero four one seven one six four three zero zero please", "IBAN",
     "NL nine one ABNA zero four one seven one six four three zero zero"),
    # a DNI's check letter after its spelled digits
    ("DNI seven seven one seven zero two five eight Z", "NATIONAL_ID", "seven seven one seven zero two five eight Z"),
    # groups set off by commas, as a card is read aloud: a card after a card word (as "4111,1111,...")
    ("the card: four one one one, one one one one, one one one one, one one one one, exp one two", "PAYMENT_CARD",
     "four one one one, one one one one, one one one one, one one one one"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "entity", "value"), SPELLED)
@BOTH_PRE_FILTERS
def test_a_number_spelled_in_words_is_found_as_what_it_spells(
    text: str, entity: str, value: str, engine: PolicyEngine
) -> None:
    assert pack_found(text, engine) == [(entity, value)]


@pytest.mark.parametrize(
    "text",
    [
        "one two three four five six seven eight nine ten",  # spells nothing a detector accepts
        "four one one one one one one one one one one one one one one two",  # Luhn fails
        "someone one two three four five six",  # the run starts inside a word: six tokens left
        "one or two, maybe three",
        "Tisch, sechs Stühle, vier Lampen, zwei Sofas, ein Teppich",
        "a card 4111 1111 1111 1112 and one two",
        "count: zero one two three four five six seven eight nine",  # counting, not a number (NHS-valid)
        "null eins zwei drei vier fünf sechs sieben acht neun",
        "nine eight seven six five four three two one zero",
        "four one one one, one one one one, one one one one, one one one one",  # commas and no card word: a list
        f"IBAN DE {IBAN_EN[:-4]}one",  # the IBAN's check fails (and the digits are no number of another type)
        "DNI seven seven one seven zero two five eight A",  # the wrong check letter
    ],
)
def test_words_that_spell_nothing_are_left_alone(text: str) -> None:
    assert pack_found(text) == []


def test_a_card_and_an_expiry_date_in_words_stay_two_numbers() -> None:
    text = f"card {CARD_EN}, one two two seven"
    assert pack_found(text) == [("PAYMENT_CARD", CARD_EN)]


def test_the_words_are_redacted_in_a_jsonl_file_by_either_pre_filter() -> None:
    phone = "zero one seven six double two three four five six seven"
    line = json.dumps({"messages": [{"role": "user", "content": f"call me on {phone}, thanks"}]}) + "\n"
    for engine in (EU_PACK, EU_PACK_RE):
        scanner = JsonlScanner(engine, source="t.jsonl")
        out = scanner.feed(line.encode()) + scanner.finish()
        assert scanner.summary.redacted_records == 1
        assert json.loads(out)["messages"][0]["content"] == "call me on [PHONE], thanks"


def test_a_card_in_words_blocks_the_record_as_a_card_in_digits_does() -> None:
    outputs = []
    for card in (CARD_EN, "4111 1111 1111 1111"):
        line = json.dumps({"messages": [{"role": "user", "content": f"my card is {card}"}]}) + "\n"
        scanner = JsonlScanner(EU_PACK, source="t.jsonl")
        outputs.append(scanner.feed(line.encode()) + scanner.finish())
        assert scanner.summary.blocked_records_total == 1
        assert scanner.summary.entity_counts == {"PAYMENT_CARD": 1}
    assert outputs[0] == outputs[1]


_pieces = st.sampled_from(
    [" one", " two", " four", "four", " eins", " vier", " double", " plus", " 1111", "1", ",", " ", "-", "x",
     "card ", "Tel ", "\u00e9", "\\n", "\n", '"', "FOUR", " ONE", "si", "x one"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=30).map("".join))
@example(f"card {CARD_EN}")
@example(f"card\n{CARD_EN}\n")
@example(f'card "{CARD_EN}"')
@example("Tel zero one seven six double two three four five six seven")
def test_the_raw_line_pre_filters_pass_every_line_with_a_spelled_finding(text: str) -> None:
    """The raw-line fast path (Hyperscan, or ``re`` with its screens) never calls a line clean that a full
    scan redacts."""
    assert_raw_line_passes_findings(text)


def test_read_keeps_the_digits_and_who_wrote_them() -> None:
    text = "plus four nine, double three"
    run = spelled.read(text, 0, len(text))
    assert run is not None
    assert run.number == "+49, 33"
    assert [text[s:e] for s, e in (span for span in run.owner if span is not None)] == [
        "plus", "four", "nine", "double three", "double three"
    ]  # fmt: skip
