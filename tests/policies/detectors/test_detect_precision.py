"""Issue 13, part 3: business numbers, dates and barcodes are not personal data by themselves; the id
schemes that were missing are found; schemes that pass by chance need their label word."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.policies import PolicyEngine, load_policy

EU = PolicyEngine(load_policy("pack:eu-gdpr"))


def found(text: str) -> list[tuple[str, str, str]]:
    return [(f.entity, f.scheme, text[f.start : f.end]) for f in EU.scan_record({"t": text}, 0).findings]


# Each of these was typed PHONE, NATIONAL_ID or PAYMENT_CARD by the eu-gdpr pack (the corpus decoys).
NOT_PERSONAL = [
    "Invoice INV-2019-27985 is paid.",
    "Invoice INV-2019-60941 is paid.",  # a valid Dutch BSN by checksum, in an invoice number
    "Order PO-9547959 ships in 3 days.",
    "Ticket #69707214 was closed.",
    "Claim no. 72498494 is under review.",
    "Customer no. 8967 5191, case 111856.",
    "LOINC 86826-4 result attached.",
    "Upgrade to version 20.28.44 first.",
    "Tracking 1Z130AA7579383470.",  # a valid NHS number by checksum, inside a tracking number
    "EAN 5903633639539",  # a Luhn-valid 13-digit Maestro number that is a valid EAN-13
    "EAN 4012154710595",
    "Rechnung vom 22.03.2023.",
    "Faktura z dnia 14.01.2024.",
    "Meeting on 26/12/2024 at 10:00.",
    "Termin am 2023-03-18 um 10 Uhr.",
    "Die Lieferung kommt am 24.5.2023.",
    "the 2020-2021 season",  # a range of years
    "im Geschäftsjahr 1999/2000",
    "72498494",
    "612345678",
]


@pytest.mark.parametrize("text", NOT_PERSONAL)
def test_business_numbers_dates_and_barcodes_are_not_personal_data(text: str) -> None:
    assert found(text) == []


PHONES = [
    ("Tel.: 612345678", "612345678"),  # bare digits, with a phone word
    ("Mi teléfono es 612 34 56 78.", "612 34 56 78"),
    ("llama al 612 34 56 78 y pregunta", "612 34 56 78"),  # a one-letter word after it is not part of it
    ("Meine Nummer ist 030 1234567.", "030 1234567"),  # trunk prefix
    ("see 06 12 34 56 78 here", "06 12 34 56 78"),
    ("ring +45 32 12 34 56", "+45 32 12 34 56"),  # international form, whatever the words
    ("Order hotline +49 30 901820", "+49 30 901820"),
    ("O meu número é 912 345 678.", "912 345 678"),  # national grouping
]


@pytest.mark.parametrize(("text", "value"), PHONES)
def test_numbers_written_as_phones_are_phones(text: str, value: str) -> None:
    assert found(text) == [("PHONE", "", value)]


def test_after_another_label_only_an_unmistakable_phone_counts() -> None:
    assert found("qty 030 901820") == [("PHONE", "", "030 901820")]  # trunk prefix, in groups
    assert found("Claim no. 0301234567") == []
    assert found("qty 123-45-6789") == [("NATIONAL_ID", "us.ssn", "123-45-6789")]  # an id keeps its form


def test_after_a_glued_business_prefix_only_an_unmistakable_phone_counts() -> None:
    # found by the adjacent-values property test: "qty/030 901820" was dropped as a glued business number
    assert found("qty/030 901820") == [("PHONE", "", "030 901820")]
    assert found("Tel/Fax/030 901820") == [("PHONE", "", "030 901820")]
    assert found("PO-0301234567") == []
    assert found("#0301234567") == []
    assert found("qty/123-45-6789") == [("NATIONAL_ID", "us.ssn", "123-45-6789")]  # '/' is not glue


def test_a_bare_digit_run_is_a_phone_only_with_a_phone_word() -> None:
    assert found("ref 32123456") == []
    assert found("Tel: 32123456") == [("PHONE", "", "32123456")]
    assert found("Claim no. 32123456, tel 32123457") == [("PHONE", "", "32123457")]


IDS = [
    ("NI number AB 12 34 56 C thanks", "gb.nino", "AB 12 34 56 C"),
    ("NINO: AB123456C", "gb.nino", "AB123456C"),
    # in small letters and in its groups, after a word for it
    ("my NINO is ab 12 34 56 c, thanks", "gb.nino", "ab 12 34 56 c"),
    ("National Insurance number: ab 12 34 56 d", "gb.nino", "ab 12 34 56 d"),
    ("NI No. jk 55 01 23 a", "gb.nino", "jk 55 01 23 a"),
    ("DNI 54362315k", "es.dni", "54362315k"),  # a lower-case check letter
    ("SSN 536904399", "us.ssn.compact", "536904399"),
    ("my social security number is 536904399", "us.ssn.compact", "536904399"),
    ("NIF 501964843", "pt.nif", "501964843"),
    ("My ID number is 234567813.", "pt.nif", "234567813"),  # or a word for an identity number
    ("contribuinte n.º 501 964 843", "pt.nif", "501 964 843"),
    ("personnummer 8112189876", "se.personnummer", "8112189876"),
]


@pytest.mark.parametrize(("text", "scheme", "value"), IDS)
def test_missing_schemes_are_found(text: str, scheme: str, value: str) -> None:
    assert found(text) == [("NATIONAL_ID", scheme, value)]


@pytest.mark.parametrize(
    "text",
    [
        "ref 536904399",  # a bare 9-digit number: a valid SSN by its rules, but no "SSN" before it
        "order 501964843",  # a valid NIF by checksum, no "NIF"
        "QQ 12 34 56 C",  # QQ is never issued (the prefix of specimen numbers)
        "GB 12 34 56 A",
        "AB 12 34 56 E",  # suffix A-D only
        "meet me at 12 34 56 a",  # small letters in groups: prose, unless a word for an id stands before it
        "ab 12 34 56 c",
        "NINO: qq 12 34 56 c",  # a word does not make a prefix that is never issued valid
        "NINO: ab 12 34 56 cd",  # glued to a letter: not the number's end
    ],
)
def test_schemes_that_pass_by_chance_need_their_word(text: str) -> None:
    assert found(text) == []


def test_a_card_that_is_also_a_barcode_needs_a_card_word() -> None:
    assert found("Karte 5903633639539") == [("PAYMENT_CARD", "", "5903633639539")]
    assert found("4111 1111 1111 1111") == [("PAYMENT_CARD", "", "4111 1111 1111 1111")]
    # a length no scheme issues for its prefix: Mastercard is 16 digits, Amex 15
    assert found("card 550000000000004") == []
    assert found("card 3411111111111110") == []


_LABEL_PIECES = ["Tel", "TEL.", "[PHONE]", "Claim no.", "İd", "ID", "SSN", "nif", "Invoice", " ", "\x00", "ſ", "x"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LABEL_PIECES) | st.text(max_size=3), max_size=10), st.integers(0, 40))
def test_label_words_read_on_lower_cased_text_are_those_read_case_insensitively(parts: list[str], cut: int) -> None:
    from bastion.policies.detectors import context
    from bastion.policies.detectors.base import is_word_char

    text = "".join(parts) + " 612345678"
    start = len(text) - 9 if cut == 0 else min(cut, len(text))
    lo = max(0, start - context.REACH, text.rfind("\x00", 0, start) + 1)
    found = list(context._WORD.finditer(text, lo, start))  # the case-insensitive pattern on the text itself
    if found and found[-1].end() == start and start < len(text) and is_word_char(text[start - 1]):
        found.pop()  # glued to the number: not a label
    assert context.words_before(text, start) == [m.lastgroup for m in found]


@pytest.mark.parametrize(
    ("text", "scheme"),
    [
        ("asmens kodas 38703181745", "lt.asmens"),  # also a valid Estonian isikukood, the first in the pack
        ("isikukood 38703181745", "ee.ik"),
        ("38703181745", "ee.ik"),  # no word: the pack's order decides
        ("Asmens kodas: 38703181745", "lt.asmens"),
        ("PESEL 44051401359", "pl.pesel"),
        ("AMKA 01013099997", "gr.amka"),
        ("OIB 38703181745", "ee.ik"),  # the named scheme is taken only where the number is valid in it
    ],
)
def test_a_word_naming_a_scheme_types_a_number_valid_in_several(text: str, scheme: str) -> None:
    value = text.split()[-1]
    assert found(text) == [("NATIONAL_ID", scheme, value)]


@pytest.mark.parametrize(
    ("text", "scheme", "value"),
    [
        ("PESEL: 4405140145 8", "pl.pesel", "4405140145 8"),  # a digit split off: no form PESEL has
        ("pesel 4405 1401 359", "pl.pesel", "4405 1401 359"),  # was typed PHONE
        ("my ssn is 536 90 4399", "us.ssn.compact", "536 90 4399"),
        ("SSN: 536.90.4399", "us.ssn.compact", "536.90.4399"),
        ("BSN 1112 22333", "nl.bsn", "1112 22333"),
        ("amka 010130 99997", "gr.amka", "010130 99997"),
    ],
)
def test_a_number_its_scheme_is_named_for_counts_in_any_grouping(text: str, scheme: str, value: str) -> None:
    assert found(text) == [("NATIONAL_ID", scheme, value)]


@pytest.mark.parametrize(
    "text",
    [
        "ref 536 90 4399",  # valid digits, no word naming the scheme: the grouping is no SSN's
        "PESEL: 4405140145 9",  # named, but the digits fail its check
        "PESEL 1112 22333",  # valid as a BSN, but PESEL is named and has 11 digits
    ],
)
def test_other_groups_count_only_for_the_named_scheme(text: str) -> None:
    assert not [f for f in found(text) if f[0] == "NATIONAL_ID"]
