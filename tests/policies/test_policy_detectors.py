"""Detectors, table-driven: true positives (including formatted variants) and near misses that must
not match (checksum-invalid, too short, wrong shape)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_helpers import engine_for

# (detector type, text, expected scheme or "" ) -> must be found exactly as written
POSITIVES = [
    ("email", "ana.lopez@example.es", ""),
    ("email", "first.last+tag@sub.example.co.uk", ""),
    ("email", "JOHN_DOE@EXAMPLE.COM", ""),
    ("email", "jürgen.müller@beispiel.de", ""),
    # written to dodge scrapers: the bracketed "at" (and "dot") forms
    ("email", "ana.lopez (at) example (dot) es", ""),
    ("email", "ana.lopez[at]example.es", ""),
    ("email", "Ana.Lopez {AT} example {DOT} co {DOT} uk", ""),
    ("email", "ana <@> example [.] es", ""),
    # written in words, or with a space after the '@'
    ("email", "anna at example dot com", ""),
    ("email", "anna dot berg at example dot co dot uk", ""),
    ("email", "ANNA.BERG AT EXAMPLE DOT DE", ""),
    ("email", "anna.berg @ example.com", ""),
    ("email", "anna.berg@ example.com", ""),
    ("email", "anna.berg@example . com", ""),  # spaced dots, before a top-level domain that is no word
    ("email", "anna . berg @ example . com", ""),
    ("email", "anna . berg@example.com", ""),
    ("email", "anna (at) example . com", ""),
    ("email", "anna @ example dot com", ""),  # an '@' with words for the dots
    ("email", "anna@example dot co dot uk", ""),
    ("email", "anna@example[.]com", ""),  # a dot in brackets after a plain '@'
    # the "at" and "dot" in the pack's languages, as web pages write them
    ("email", "anna.berg (at) firma (punkt) de", ""),
    ("email", "anna [AT] firma [PUNKT] de", ""),
    ("email", "ana (arroba) empresa (punto) es", ""),
    ("email", "ana arroba empresa punto com", ""),
    ("email", "anne (arobase) exemple (point) fr", ""),
    ("email", "anna (chiocciola) esempio (punto) it", ""),
    ("email", "anna [apenstaartje] voorbeeld [punt] nl", ""),
    ("email", "jan (at) przyklad (kropka) pl", ""),
    ("email", "anna @ example [dot] com", ""),
    ("email", "anna.berg@example (.) co (.) uk", ""),
    ("email", "anna@example\u3002com", ""),  # ideographic full stops separate a domain's labels (UTS #46)
    ("email", "anna@example\uff61de", ""),
    ("email", "anna\uff20example\u3002com", ""),
    ("phone", "+49 30 901820", ""),
    ("phone", "0049 30 901820", ""),
    ("phone", "030/901820", ""),
    ("phone", "(030) 1234 5678", ""),
    ("phone", "+33 1 42 68 53 00", ""),
    ("phone", "06 12 34 56 78", ""),
    ("phone", "+44 20 7946 0958", ""),
    ("phone", "020 7946 0958", ""),
    ("phone", "+39 06 6982 2345", ""),
    # written with "+": a possible length is enough (a range libphonenumber's metadata calls unused)
    ("phone", "+44 7700 900123", ""),
    ("iban", "DE89 3704 0044 0532 0130 00", ""),
    ("iban", "DE89370400440532013000", ""),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606", ""),
    ("iban", "GB82 WEST 1234 5698 7654 32", ""),
    ("iban", "NL91 ABNA 0417 1643 00", ""),
    ("payment_card", "4111 1111 1111 1111", ""),
    ("payment_card", "4111-1111-1111-1111", ""),
    ("payment_card", "5555555555554444", ""),
    ("payment_card", "378282246310005", ""),
    ("national_id", "36 574 261 809", "de.idnr"),
    ("national_id", "36574261809", "de.idnr"),
    ("national_id", "2 95 10 99 126 111 93", "fr.nir"),
    ("national_id", "54362315K", "es.dni"),
    ("national_id", "X2482300W", "es.nie"),
    ("national_id", "X2482300w", "es.nie"),  # letter-led codes in small letters, or with a small check letter
    ("national_id", "x2482300w", "es.nie"),
    ("national_id", "rccmnl83s18d969h", "it.codicefiscale"),
    ("national_id", "RCCMNL83S18D969h", "it.codicefiscale"),
    ("national_id", "ab123456c", "gb.nino"),
    ("national_id", "AB 12 34 56 c", "gb.nino"),
    ("national_id", "RCCMNL83S18D969H", "it.codicefiscale"),
    ("national_id", "111222333", "nl.bsn"),
    ("national_id", "85.07.30-033.28", "be.nn"),
    ("national_id", "880320-0016", "se.personnummer"),
    ("national_id", "943 476 5919", "gb.nhs"),
    ("national_id", "536-90-4399", "us.ssn"),
    ("national_id", "44051401359", "pl.pesel"),
    ("national_id", "131052-308T", "fi.hetu"),
    ("national_id", "6433435F", "ie.pps"),
    ("national_id", "1800101221144", "ro.cnp"),
    ("national_id", "0101006500006", "si.emso"),
    ("national_id", "37605030299", "ee.ik"),
    ("national_id", "01013099997", "gr.amka"),
    ("national_id", "15076500565", "no.fodselsnummer"),
    ("national_id", "736028/5163", "cz.rc"),
    ("ip_address", "8.8.8.8", "ipv4"),
    ("ip_address", "192.168.1.10", "ipv4"),
    ("ip_address", "2001:4860:4860::8888", "ipv6"),
    ("ip_address", "fe80::1", "ipv6"),
    # defanged, as threat reports write addresses (see detectors/defanged.py)
    ("ip_address", "81[.]2[.]69[.]160", "ipv4"),
    ("ip_address", "81(.)2(.)69(.)160", "ipv4"),
    ("ip_address", "81{.}2{.}69{.}160", "ipv4"),
    ("ip_address", "81[dot]2[DOT]69[Dot]160", "ipv4"),
    ("ip_address", "81 [.] 2 [.] 69 [.] 160", "ipv4"),
    ("ip_address", "81.2.69[.]160", "ipv4"),
]

NEAR_MISSES = [
    ("email", "user@localhost"),
    ("email", "a@b"),
    ("email", "@handle"),
    ("email", "foo@bar.c0m"),
    ("email", "the total (at) 5.00"),  # no TLD after the "at"
    ("email", "meet me (at) the station"),  # no dot in the "domain"
    ("email", "look at the dot it makes"),  # "at ... dot" only before a top-level domain that is no word
    ("email", "we met at the office dot com"),  # the domain is one word
    ("email", "find us at example dot com"),
    ("email", "reach me @ home . Thanks"),  # a spaced dot before a word that is no domain: prose
    ("email", "see you @ noon . It works"),
    ("email", "thanks @anna dot com"),  # a mention, as "thanks @anna.berg"
    ("email", "find us @ example dot com"),  # a web site in prose: the word before "at" is no local part
    ("email", "I was at example dot com"),
    ("email", "More info at example dot org"),
    ("email", "anna at example dot comic"),
    ("email", "thanks @anna.berg"),  # a space before the '@' and none after: a mention
    ("email", "thanks @anna [dot] com"),  # a mention, also with a bracketed dot
    ("email", "anna@example[.]c0m"),
    ("email", "agreed at this point de facto"),  # "point" counts only in brackets
    ("email", "look at example punkt de"),
    ("email", "el punto de vista arroba todo"),  # an at-word in prose, with no address after it
    ("email", "anna (chez) exemple (point) fr"),  # "chez" is no word for the '@'
    ("phone", "+49 30 12"),
    ("phone", "+49 10 12345"),  # a possible length in Germany, but not valid and under eight national digits
    ("phone", "123456"),
    ("phone", "0000 000000"),
    ("phone", "2024-11-25"),
    ("phone", "3.14159265"),
    ("iban", "DE89 3704 0044 0532 0130 01"),  # mod-97 check fails
    ("iban", "XX89370400440532013000"),  # no such country
    ("payment_card", "4111111111111112"),  # Luhn fails
    ("payment_card", "1234 5678 9012 3456"),
    ("payment_card", "0000 0000 0000 0000"),
    ("national_id", "36 574 261 808"),
    ("national_id", "2 95 10 99 126 111 94"),
    ("national_id", "54362315L"),
    ("national_id", "X2482300A"),
    ("national_id", "x2482300a"),
    ("national_id", "rccmnl83s18d969x"),
    ("national_id", "at 12 34 56 a"),  # a NINO in small letters in its groups needs a word for it: prose
    ("national_id", "RCCMNL83S18D969X"),
    ("national_id", "111222334"),
    ("national_id", "85.07.30-033.29"),
    ("national_id", "880320-0017"),
    ("national_id", "943 476 5918"),
    ("national_id", "000-12-3456"),
    ("national_id", "536904399"),  # a bare 9-digit number is not taken for a US SSN
    ("national_id", "44051401358"),
    ("national_id", "131052-308U"),
    ("national_id", "6433435E"),
    ("national_id", "1800101221145"),
    ("national_id", "736028/5164"),
    ("national_id", "94577403194"),  # a valid Croatian OIB, but bare 11 digits pass its check one time in ten
    ("ip_address", "256.1.1.1"),
    ("ip_address", "1.2.3"),
    ("ip_address", "01.02.03.04"),
    ("ip_address", "1.2.3.4.5"),
    ("ip_address", "2001:db8::g1"),
    ("ip_address", "10:30:00"),
    ("ip_address", "v1.2.3.4"),
    ("ip_address", "256[.]1[.]1[.]1"),
    ("ip_address", "1[.]2[.]3"),
    ("ip_address", "1[.]2[.]3[.]4[.]5"),  # five groups: a version or an OID, as with plain dots
    ("ip_address", "1.2[.]3[.]4[.]5"),
    ("ip_address", "v1[.]2[.]3[.]4"),
    ("ip_address", "81[.]2[.]69[.]1601"),
    ("ip_address", "81[-]2[-]69[-]160"),
]


@pytest.mark.parametrize(("kind", "value", "scheme"), POSITIVES, ids=[f"{k}:{v}" for k, v, _ in POSITIVES])
@pytest.mark.parametrize("context", ["{}", "see {} here", "({}).", "x\n{}\ty"])
def test_true_positive_found_exactly(kind: str, value: str, scheme: str, context: str) -> None:
    engine = engine_for(kind)
    text = context.format(value)
    hits = engine.find(text)
    assert [(text[h.start : h.end], h.scheme) for h in hits] == [(value, scheme)]
    assert hits[0].detector.entity == engine.detectors[0].entity


@pytest.mark.parametrize(("kind", "value"), NEAR_MISSES, ids=[f"{k}:{v}" for k, v in NEAR_MISSES])
def test_near_miss_not_found(kind: str, value: str) -> None:
    assert engine_for(kind).find(f"see {value} here") == []


@pytest.mark.parametrize(("kind", "value"), [("iban", "DE89370400440532013000")])
def test_glued_to_letters_is_not_a_match(kind: str, value: str) -> None:
    engine = engine_for(kind)
    assert engine.find(f"ref{value}") == []
    assert engine.find(f"{value}x") == []


@pytest.mark.parametrize(("kind", "value"), [("payment_card", "4111 1111 1111 1111"), ("national_id", "111222333")])
def test_cards_and_ids_glued_to_letters_are_found_but_not_glued_to_digits(kind: str, value: str) -> None:
    # Issue 8: "cards ... glued to letters", "tax ids ... glued to letters" must be found (Luhn/checksum
    # keeps this precise); a digit on either side makes it a different, longer number.
    engine = engine_for(kind)
    assert [(h.start, h.end) for h in engine.find(f"ref{value}")] == [(3, 3 + len(value))]
    assert [(h.start, h.end) for h in engine.find(f"{value}x")] == [(0, len(value))]
    # (the longer number may be another valid one, e.g. a 10-digit NHS number, but not this value)
    assert (1, 1 + len(value)) not in [(h.start, h.end) for h in engine.find(f"9{value}")]
    assert (0, len(value)) not in [(h.start, h.end) for h in engine.find(f"{value}9")]


def test_phone_regions_limit_national_formats() -> None:
    # A French national number is not recognised when only British formats are configured...
    assert engine_for("phone", regions=["GB"]).find("06 12 34 56 78") == []
    assert len(engine_for("phone", regions=["FR"]).find("06 12 34 56 78")) == 1
    # ...but international format always is.
    assert len(engine_for("phone", regions=["DE"]).find("+33 6 12 34 56 78")) == 1


@pytest.mark.parametrize(
    ("text", "value", "scheme"),
    [
        ("OIB: 94577403194", "94577403194", "hr.oib"),
        ("SVNR 1237 010180", "1237 010180", "at.vnr"),
        ("CPR-nr. 211062-5629", "211062-5629", "dk.cpr"),
        ("asmens kodas 90542799748", "90542799748", "lt.asmens"),  # (one also valid in Estonia is ee.ik)
        ("EGN 7523169263", "7523169263", "bg.egn"),
    ],
)
def test_weak_national_schemes_need_their_word(text: str, value: str, scheme: str) -> None:
    engine = engine_for("national_id")
    assert [(text[h.start : h.end], h.scheme) for h in engine.find(text)] == [(value, scheme)]
    assert engine.find(f"Nr {value}") == []


def test_a_13_digit_number_named_a_barcode_is_not_a_personal_number() -> None:
    engine = engine_for("national_id", schemes=["ro.cnp"])
    assert engine.find("EAN 4000921088381") == []  # passes the CNP's checks, but an EAN names it
    assert [h.scheme for h in engine.find("CNP 4000921088381")] == ["ro.cnp"]


def test_national_id_schemes_can_be_restricted() -> None:
    engine = engine_for("national_id", schemes=["de.idnr"])
    assert engine.find("111222333") == []  # a valid Dutch BSN, not asked for
    assert len(engine.find("36 574 261 809")) == 1


def test_ip_private_addresses_can_be_excluded() -> None:
    engine = engine_for("ip_address", include_private=False)
    assert engine.find("10.0.0.1 and 192.168.1.10 and fe80::1") == []
    assert len(engine.find("host 8.8.8.8")) == 1


def test_ip_versions() -> None:
    assert engine_for("ip_address", versions=[6]).find("8.8.8.8") == []
    assert engine_for("ip_address", versions=[4]).find("2001:4860:4860::8888") == []


def test_custom_regex_and_keywords() -> None:
    engine = engine_for("regex", entity="PROJECT_CODE", pattern=r"PRJ-[0-9]{4}")
    text = "see PRJ-1234 and PRJ-12"
    assert [(text[h.start : h.end], h.detector.entity) for h in engine.find(text)] == [("PRJ-1234", "PROJECT_CODE")]
    kw = engine_for("keywords", entity="CODENAME", keywords=["Blue Falcon", "nightjar"])
    text = "Project blue falcon and NIGHTJAR, not nightjars"
    assert [text[h.start : h.end] for h in kw.find(text)] == ["blue falcon", "NIGHTJAR"]
    exact = engine_for("keywords", entity="CODENAME", keywords=["Nightjar"], case_sensitive=True, whole_word=False)
    other = "nightjar Nightjars"
    assert [other[h.start : h.end] for h in exact.find(other)] == ["Nightjar"]


def test_several_entities_in_one_string_do_not_overlap() -> None:
    from bastion.policies import PolicyEngine, load_policy

    engine = PolicyEngine(load_policy("pack:eu-gdpr"))
    text = "Ana (ana@example.es, +34 612 345 678) pays from ES91 2100 0418 4502 0005 1332, DNI 54362315K."
    got = [(text[h.start : h.end], h.detector.entity) for h in engine.find(text)]
    assert got == [
        ("ana@example.es", "EMAIL"),
        ("+34 612 345 678", "PHONE"),
        ("ES91 2100 0418 4502 0005 1332", "IBAN"),
        ("54362315K", "NATIONAL_ID"),
    ]


# -- the national id detector tries a scheme's shape only on windows of a length it can match ------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_written_form_of_a_scheme_reaches_its_shape(data: st.DataObject) -> None:
    """Each scheme's shape is tried only on windows whose length it can match (read off the regex); a window
    of any form the shape accepts must still reach it."""
    from bastion.policies.detectors.national_id import SCHEMES
    from bastion.policies.detectors.national_id import NationalIdDetector as Detector
    from bastion.policies.model import NationalIdDetector as Spec

    detector = Detector(Spec(id="ids", type="national_id", action="redact"))
    name = data.draw(st.sampled_from(sorted(SCHEMES)))
    scheme = SCHEMES[name]
    window = data.draw(st.from_regex(scheme.shape, fullmatch=True))
    assert name in [n for n, _, _ in detector._schemes_for(scheme.kind, len(window))]
    assert all(s.kind == scheme.kind for _, s, _ in detector._schemes_for(scheme.kind, len(window)))


@pytest.mark.parametrize(
    ("text", "ibans"),
    [
        # after a digit run the next candidate is looked for after the next letter, not at every digit
        ("4111111111111111 DE89370400440532013000", ["DE89370400440532013000"]),
        ("41111111111111119999 DE89 3704 0044 0532 0130 00.", ["DE89 3704 0044 0532 0130 00"]),
        ("1Z999AA10123456784 NL91ABNA0417164300", ["NL91ABNA0417164300"]),
        ("12345678901234-GB82WEST12345698765432 x", ["GB82WEST12345698765432"]),
        ("ref 98765432109876 / 12345678901234 FR1420041010050500013M02606", ["FR1420041010050500013M02606"]),
        ("DE89370400440532013000 NL91ABNA0417164300", ["DE89370400440532013000", "NL91ABNA0417164300"]),
        ("0123456789012345678901234567890123456789", []),
    ],
)
def test_ibans_after_long_digit_runs(text: str, ibans: list[str]) -> None:
    assert [text[h.start : h.end] for h in engine_for("iban").find(text)] == ibans


# IBANs, digit runs, letters (ASCII and not) and separators to glue into texts
IBAN_PIECES = [
    "DE89370400440532013000",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "ÄB89370400440532013000",
    "4111111111111111",
    "1Z999AA1012345678",
    "DE",
    "89",
    "12",
    "0",
    "ab",
    "Ä",
    "x",
    " ",
    "-",
    ".",
]
_IBAN_ENGINE = engine_for("iban")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(IBAN_PIECES), max_size=8))
def test_iban_pass_finds_what_trying_every_position_finds(parts: list[str]) -> None:
    """The IBAN pass skips ahead to the next ASCII letter after a candidate without two letters before it; it
    must find exactly what the plain loop finds, which tries the next position after every miss."""
    from bastion.policies.detectors.candidates import COMPILED

    text = "".join(parts)
    detector = _IBAN_ENGINE.detectors[0]
    expected: list[tuple[int, int]] = []
    pos = 0
    while (tail := COMPILED["iban"].search(text, pos)) is not None:
        s = tail.start() - 2
        hits = []
        if s >= 0 and text[s : s + 2].isascii() and text[s : s + 2].isalpha():
            hits = detector.validate(text, s, tail.end(), "iban")
            expected.extend((h.start, h.end) for h in hits)
        pos = max(h.end for h in hits) if hits else tail.start() + 1
    assert [(h.start, h.end) for h in _IBAN_ENGINE.find(text)] == expected
