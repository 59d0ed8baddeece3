"""Card numbers and IBANs written with separators no number uses ("4111*1111*1111*1111", "DE89*3704*...") are
read as what they are."""

from __future__ import annotations

import pytest
from detector_helpers import (
    BOTH_PRE_FILTERS,
    assert_card_blocked_in_a_jsonl_file,
    assert_raw_line_passes_findings,
    pack_found,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.policies import PolicyEngine

CARDS = [
    ("4111*1111*1111*1111", "4111*1111*1111*1111"),
    ("card 4111|1111|1111|1111", "4111|1111|1111|1111"),
    ("card 4111 | 1111 | 1111 | 1111 thanks", "4111 | 1111 | 1111 | 1111"),
    ("card 4111~1111~1111~1111", "4111~1111~1111~1111"),
    ("card 4111 \u2022 1111 \u2022 1111 \u2022 1111", "4111 \u2022 1111 \u2022 1111 \u2022 1111"),
    ("card 4111:1111:1111:1111", "4111:1111:1111:1111"),
    ("card 4111+1111+1111+1111", "4111+1111+1111+1111"),
    ("card 4111#1111#1111#1111", "4111#1111#1111#1111"),
    ("my card is 4111,1111,1111,1111", "4111,1111,1111,1111"),  # commas: after a card word
    ("Karte 4111;1111;1111;1111", "4111;1111;1111;1111"),
    ("Amex 3782*822463*10005", "3782*822463*10005"),
    ("card 4111-1111*1111-1111", "4111-1111*1111-1111"),  # mixed with a usual separator
    ("card 4111*1111*1111*1111*1227", "4111*1111*1111*1111"),  # the card, not its expiry date
    # tabs and line breaks inside the number (JSON escapes them): after a card word, as with commas
    ("card 4111\t1111\t1111\t1111", "4111\t1111\t1111\t1111"),
    ("card 4111 1111\n1111 1111", "4111 1111\n1111 1111"),
    ("card:\r\n4111\r\n1111\r\n1111\r\n1111\r\nthanks", "4111\r\n1111\r\n1111\r\n1111"),
    ("card 4111\u20281111\u20281111\u20281111", "4111\u20281111\u20281111\u20281111"),
]


@pytest.mark.parametrize(("text", "value"), CARDS)
@BOTH_PRE_FILTERS
def test_a_card_with_odd_separators_is_found(text: str, value: str, engine: PolicyEngine) -> None:
    assert pack_found(text, engine) == [("PAYMENT_CARD", value)]


IBANS = [
    ("IBAN DE89*3704*0044*0532*0130*00", "DE89*3704*0044*0532*0130*00"),
    ("IBAN DE89 | 3704 | 0044 | 0532 | 0130 | 00 thanks", "DE89 | 3704 | 0044 | 0532 | 0130 | 00"),
    ("konto PL61,1090,1014,0000,0712,1981,2874", "PL61,1090,1014,0000,0712,1981,2874"),  # the check is enough
    ("FR76~3000~6000~0112~3456~7890~189.", "FR76~3000~6000~0112~3456~7890~189"),
    # letters in the account part: the run of digit groups starts after them
    ("IBAN GB82*WEST*1234*5698*7654*32", "GB82*WEST*1234*5698*7654*32"),
    ("IBAN GB82 | WEST | 1234 | 5698 | 7654 | 32 ok", "GB82 | WEST | 1234 | 5698 | 7654 | 32"),
    ("IT60~X054~2811~1010~0000~0123~456.", "IT60~X054~2811~1010~0000~0123~456"),  # a letter glued to the run
    ("IBAN DE89\n3704\n0044\n0532\n0130\n00", "DE89\n3704\n0044\n0532\n0130\n00"),  # no word needed
]


@pytest.mark.parametrize(("text", "value"), IBANS)
@BOTH_PRE_FILTERS
def test_an_iban_with_odd_separators_is_found(text: str, value: str, engine: PolicyEngine) -> None:
    assert pack_found(text, engine) == [("IBAN", value)]


PHONES = [
    ("call +34~887~321~455", "+34~887~321~455"),
    ("Tel +48 | 22 | 580 | 33 | 71 ok", "+48 | 22 | 580 | 33 | 71"),
    ("+34\u2022981\u2022392\u2022742", "+34\u2022981\u2022392\u2022742"),
    ("phone +34*846995394", "+34*846995394"),  # the digit pass reads "846995394": the hits are merged
    ("+49(0)~480503550.", "+49(0)~480503550"),
    ("+34~887~321~455~2024", "+34~887~321~455"),  # the longest phone from the '+', not what follows it
    ("Tel +49\t30\t901820", "+49\t30\t901820"),
]


NATIONAL_PHONES = [  # without the '+': after a word for a phone, with separators that make no list or time
    ("tel 08~847~00~52", "08~847~00~52"),
    ("phone 020|7946|0958 thanks", "020|7946|0958"),
    ("Tel. 030*901820", "030*901820"),
    ("call me at 06|12|34|56|78", "06|12|34|56|78"),
    ("Telefon: 030 ~ 901820, danke", "030 ~ 901820"),
    ("mobile 06\u202212\u202234\u202256\u202278", "06\u202212\u202234\u202256\u202278"),
    ("tel | 030 | 901820 |", "030 | 901820"),  # a table row with a word for a phone
    ("M\u00f3j numer to 22\t900\t68\t57", "22\t900\t68\t57"),  # tabs and breaks: after the word only
    ("Tel.: (07132)\n64950", "(07132)\n64950"),
    ("O meu n\u00famero \u00e9 931\r\n021\r\n972.", "931\r\n021\r\n972"),
]
PHONES += NATIONAL_PHONES


@pytest.mark.parametrize(("text", "value"), PHONES)
@BOTH_PRE_FILTERS
def test_a_phone_with_its_prefix_and_odd_separators_is_found(text: str, value: str, engine: PolicyEngine) -> None:
    assert pack_found(text, engine) == [("PHONE", value)]


@pytest.mark.parametrize(
    "text",
    [
        "4111,1111,1111,1111",  # commas and semicolons also make lists and CSV fields: only after a card word
        "ports 4000,4001,4002,4003",
        "ids 4111*1111*1111*1112",  # Luhn fails
        "at 10:30, 4111 stays",
        "card 4*1*1*1*1*1*1*1*1*1*1*1*1*1*1*1",  # no two groups of four beside an odd separator: not read
        "2019, 2020, 2021, 2022",
        "IBAN DE89*3704*0044*0532*0130*01",  # the check fails
        "v2.1*3704*0044*0532",
        "v2*ABCD*1341*3847*3873*89",  # no country code and check digits before the groups
        "scores +5|+10|+15|+20",  # a '+' and odd separators, but no valid phone
        "delta +12*3456*7890",
        "08-847~00~52",  # without the international prefix or a word for a phone, not read with odd separators
        "score 12|34|56|78",
        "| Phone | 12 | 34 |",  # the groups are no phone
        "call 10:30:45",  # colons, commas and breaks make times and lists: not read in a national number
        "call 030,901820",
        "22\t900\t68\t57",  # a break without a word for a phone: a table or a list
        "4111\n1111\n1111\n1111",  # a number on each line: a list, unless a card word names it
        "2021\t2022\t2023\t2024",
    ],
)
def test_numbers_with_odd_separators_that_are_no_card_are_left_alone(text: str) -> None:
    assert pack_found(text) == []


def test_the_record_is_blocked_in_a_jsonl_file_by_either_pre_filter() -> None:
    assert_card_blocked_in_a_jsonl_file("card 4111*1111*1111*1111")


_pieces = st.sampled_from(
    ["4111", "1111", "1", "*", "|", " | ", ",", ";", ":", "\u2022", "\u00b7", " ", "-", "card ", "x", "\\n", "\n",
     '"', "4111*1111*1111*1111", "3782*822463*10005", "\t", "\r\n", "\u2028", "+49\t30\t901820", "DE89\n3704",
     "tel ", "08~847~00~52", "030*901820", "~", "#", "="]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=25).map("".join))
@example("card 4111*1111*1111*1111")
@example("card\n4111 \u2022 1111 \u2022 1111 \u2022 1111")
@example('card "4111|1111|1111|1111"')
@example("card 4111\n1111\n1111\n1111")
@example("card 4111 -\t1111\t1111\t1111")
@example("IBAN DE89\r\n3704\r\n0044\r\n0532\r\n0130\r\n00")
@example("tel 08~847~00~52")
@example("tel 030 -~ 901820")
def test_the_raw_line_pre_filters_pass_every_line_with_such_a_card(text: str) -> None:
    assert_raw_line_passes_findings(text)
