"""Values next to other values (issue 16 part 1) and written forms the detectors used to miss (issue 8
part 3): every row is an example from the issue texts, with exactly what ``pack:eu-gdpr`` makes of it.
Plus the properties: a known value placed anywhere among other values is found (its whole span redacted),
and the redacted output, scanned again, yields no finding of a redact/block rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bastion.policies import PolicyEngine, load_policy

ENGINES = {
    "hyperscan": PolicyEngine(load_policy("pack:eu-gdpr"), prefilter="auto"),
    "re": PolicyEngine(load_policy("pack:eu-gdpr"), prefilter="re"),
}
ENGINE = ENGINES["re"]


def redact(engine: PolicyEngine, text: str) -> tuple[str, str]:
    res = engine.scan_record({"t": text})
    return res.action, res.record["t"]


# Issue 16 part 1: "values next to other values are not detected".
ADJACENT = [
    ("DE89370400440532013000 4111 1111 1111 1111", "block", "[IBAN] [PAYMENT_CARD]"),
    ("4111111111111111 2001:4860:4860::8888", "block", "[PAYMENT_CARD] [IP_ADDRESS]"),
    ("4111 1111 1111 1111 fe80::1 2001:4860:4860::8888", "block", "[PAYMENT_CARD] fe80::1 [IP_ADDRESS]"),
    ("4111111111111111 1bob@example.com", "block", "[PAYMENT_CARD] [EMAIL]"),
    ("4111111111111111 1@example.com", "block", "[PAYMENT_CARD] [EMAIL]"),
    ("+44 20 7946 0958/4111111111111111", "block", "[PHONE]/[PAYMENT_CARD]"),
    # "8.8.8.8 01" is a valid phone number somewhere, but not written as one (issue 13): two addresses.
    ("8.8.8.8 01:4860:4860::8888", "redact", "[IP_ADDRESS] [IP_ADDRESS]"),
    # "+49 30 901820 1" is a valid (longer) number too: overlapping readings are redacted as one span,
    # typed by the winner (checksummed / structured types before phone numbers).
    ("+49 30 901820 1@example.com", "redact", "[EMAIL]"),
    ("+49 30 901820 x@example.com", "redact", "[PHONE] [EMAIL]"),
    ("mailto:bob@example.com?cc=alice@example.org", "redact", "mailto:[EMAIL]?[EMAIL]"),
    ("mailto:bob@example.com/alice@example.org", "redact", "mailto:[EMAIL]/[EMAIL]"),
    ("mailto:bob@example.com|alice@example.org", "redact", "mailto:[EMAIL]|[EMAIL]"),
    ("DE89370400440532013000 DE89370400440532013000", "redact", "[IBAN] [IBAN]"),
    ("DE89 3704 0044 0532 0130 00 GB82 WEST 1234 5698 7654 32", "redact", "[IBAN] [IBAN]"),
    ("123-45-6789(06126 78", "redact", "[NATIONAL_ID]([PHONE]"),
    ("4111111111111111/12/27", "block", "[PAYMENT_CARD]/12/27"),
    ("4111111111111111-123", "block", "[PAYMENT_CARD]-123"),
    ("4111111111111111/5500000000000004", "block", "[PAYMENT_CARD]/[PAYMENT_CARD]"),
    ("8.8.8.8/4111111111111111", "block", "[IP_ADDRESS]/[PAYMENT_CARD]"),
    # Once, redacting "888888" as a phone made "6::" an IPv6 address (the re-scan property below keeps
    # that covered); a bare 6-digit run is no longer read as a phone without a phone's written form.
    ("6::888888", "allow", "6::888888"),
    ("Tel. 6::888888", "redact", "Tel. [IP_ADDRESS][PHONE]"),
    # Issue 8: "a card read as two phones": the stricter action wins.
    ("qty 2 4539 1488 0343 6467", "block", "qty 2 [PAYMENT_CARD]"),
    # Inside a longer digit run, a phone number needs its international or trunk prefix (issue 13:
    # business numbers, timestamps, versions and prices are not phone numbers).
    ("2024-01-15T10:30:00Z", "allow", "2024-01-15T10:30:00Z"),
    ("v1.20.3334", "allow", "v1.20.3334"),
    ("price 1.234.567,89", "allow", "price 1.234.567,89"),
]

# Issue 8 part 3: written forms (normalised view: NFKC, Unicode digits, format characters, dash/space classes).
WRITTEN_FORMS = [
    # IBAN: any case and separator
    ("iban de89 3704 0044 0532 0130 00", "redact", "iban [IBAN]"),
    ("iban De89370400440532013000", "redact", "iban [IBAN]"),
    ("gb82west12345698765432", "redact", "[IBAN]"),
    ("DE89-3704-0044-0532-0130-00", "redact", "[IBAN]"),
    ("DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000", "redact", "[IBAN]"),
    # cards: any separator, glued to letters
    ("4111.1111.1111.1111", "block", "[PAYMENT_CARD]"),
    ("4111/1111/1111/1111", "block", "[PAYMENT_CARD]"),
    ("4111_1111_1111_1111", "block", "[PAYMENT_CARD]"),
    ("4111    1111    1111    1111", "block", "[PAYMENT_CARD]"),
    ("4111\u200b1111\u200b1111\u200b1111", "block", "[PAYMENT_CARD]"),
    ("41\u00ad11 1111 1111 1111", "block", "[PAYMENT_CARD]"),
    ("card4111111111111111", "block", "card[PAYMENT_CARD]"),
    ("x4111111111111111y", "block", "x[PAYMENT_CARD]y"),
    ("\uff14\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11 \uff11\uff11\uff11\uff11", "block",
     "[PAYMENT_CARD]"),
    ("\u0664" + "\u0661" * 15, "block", "[PAYMENT_CARD]"),
    # phones: en-dash, narrow NBSP, figure space, 4 spaces, full-width; US national with US not first
    ("+49\u201330\u2013901820", "redact", "[PHONE]"),
    ("+49\u202f30\u202f901820", "redact", "[PHONE]"),
    ("+49\u200730\u2007901820", "redact", "[PHONE]"),
    ("+49    30    901820", "redact", "[PHONE]"),
    ("030\u2013901820", "redact", "[PHONE]"),
    ("call \uff0b\uff14\uff19 \uff13\uff10 \uff19\uff10\uff11\uff18\uff12\uff10 now", "redact", "call [PHONE] now"),
    ("tel +33 6 12 34 56 78, +33 6 12 34 56 79", "redact", "tel [PHONE], [PHONE]"),
    # tax ids: dashes, glued to letters
    ("36-574-261-809", "redact", "[NATIONAL_ID]"),
    ("IdNr36574261809", "redact", "IdNr[NATIONAL_ID]"),
    ("Steuer-ID:36574261809x", "redact", "Steuer-ID:[NATIONAL_ID]x"),
    ("dni12345678Z", "redact", "dni[NATIONAL_ID]"),
    ("BSN 111-222-333", "redact", "BSN [NATIONAL_ID]"),
    # e-mail: quoted local part, full-width at sign
    ('"john doe"@example.com', "redact", "[EMAIL]"),
    ('mail "john.doe"@example.org now', "redact", "mail [EMAIL] now"),
    ("ana\uff20example.es", "redact", "[EMAIL]"),
]  # fmt: skip


@pytest.mark.parametrize("path", sorted(ENGINES))
@pytest.mark.parametrize(("text", "action", "redacted"), ADJACENT + WRITTEN_FORMS)
def test_issue_example(path: str, text: str, action: str, redacted: str) -> None:
    assert redact(ENGINES[path], text) == (action, redacted)


def test_us_national_numbers_whatever_the_region_order() -> None:
    from bastion.policies import policy_from_mapping

    for regions in (["US", "DE"], ["DE", "US"], ["FR", "GB", "US"]):
        engine = PolicyEngine(
            policy_from_mapping({"name": "t", "detectors": [{"id": "p", "type": "phone", "regions": regions}]})
        )
        assert redact(engine, "call (415) 555-2671 now") == ("redact", "call [PHONE] now"), regions


def test_redaction_replaces_the_original_characters() -> None:
    # The span found in the view maps back over the zero-width spaces and full-width digits.
    res = ENGINE.scan_record({"t": "a \u200b\uff14111 1111 1111 1111\u200b b"})
    assert res.record["t"] == "a \u200b[PAYMENT_CARD]\u200b b"
    (f,) = res.findings
    assert (f.start, f.end) == (3, 22)


VALUES = [
    "4111 1111 1111 1111",
    "4111111111111111",
    "5500-0000-0000-0004",
    "DE89370400440532013000",
    "DE89 3704 0044 0532 0130 00",
    "bob@example.com",
    "+49 30 901820",
    "+44 20 7946 0958",
    "030 901820",
    "123-45-6789",
    "36 574 261 809",
    "8.8.8.8",
    "2001:4860:4860::8888",
]
NEIGHBOURS = ["qty", "ref", "x", "2", "12", "2024", "06126", "1bob@example.com", "7", "ab12", "::", "DE", "(1)"]
SEPARATORS = [" ", "/", ", ", "; ", "|", " (", ") ", "\u00a0", "\n", " - ", "\t", "=", "&"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALUES),
    st.lists(st.sampled_from(NEIGHBOURS + VALUES), max_size=2),
    st.lists(st.sampled_from(NEIGHBOURS + VALUES), max_size=2),
    st.lists(st.sampled_from(SEPARATORS), min_size=4, max_size=4),
)
@example("4111 1111 1111 1111", ["DE89370400440532013000"], [], [" ", " ", " ", " "])
@example("4111111111111111", [], ["2001:4860:4860::8888"], [" ", " ", " ", " "])
@example("bob@example.com", ["bob@example.com"], [], ["/", "/", "/", "/"])
def test_a_value_among_other_values_is_found(value: str, before: list[str], after: list[str], seps: list[str]) -> None:
    prefix = "".join(n + seps[i % 2] for i, n in enumerate(before))
    suffix = "".join(seps[2 + i % 2] + n for i, n in enumerate(after))
    text = prefix + value + suffix
    start = len(prefix)
    hits = [h for h in ENGINE.find(text) if h.detector.action != "allow"]
    covered = set()
    for h in hits:
        covered.update(range(h.start, h.end))
    assert set(range(start, start + len(value))) <= covered, (text, hits)


_piece = st.sampled_from(
    [*VALUES, *NEIGHBOURS, *SEPARATORS, "6::", "888888", "\u200b", "\uff14", "-", ".", ":", "@", "+", "0", "1"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_piece, max_size=8).map("".join))
@example("6::888888")
@example("5500-0000-0000-000436 574 261 809")  # a run cut off by a placeholder becomes whole
@example("1::88888888")
# (fuzz finds: a placeholder's word, "[PHONE]", cut at the label window's start read as a phone word; a label
# word brought within reach of a number by the redaction between them)
@example("DE89\ufffd\ufffd040044053=2013000 4111 +44 20 7946 09581111 1111 1110 901")
@example("Tel john.smith.very.long.address@example.com 32123456")
def test_redacted_output_rescanned_has_no_redact_or_block_finding(text: str) -> None:
    for engine in ENGINES.values():
        res = engine.scan_record({"t": text})
        again = engine.scan_record(res.record)
        assert [f for f in again.findings if f.action != "allow"] == [], (text, res.record)


def test_sub_run_validations_are_bounded_and_fail_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    # "0 0 0 ...": every group starts a sub-run that a phone number could be; without a bound that is a
    # validation per group and length (seconds for 40 kB). The bound is counted, not timed.
    from bastion.policies.detectors.phone import PhoneDetector

    calls = [0]
    original = PhoneDetector.validate

    def counting(self: PhoneDetector, text: str, start: int, end: int, kind: str) -> list[Any]:
        calls[0] += 1
        return original(self, text, start, end, kind)

    monkeypatch.setattr(PhoneDetector, "validate", counting)
    text = "0 " * 20000
    res = ENGINE.scan_record({"t": text})
    assert calls[0] <= 2 * (2000 + len(text) // 16 + 1)  # the scan and the re-scan have a budget each
    # what was not validated is redacted whole: nothing goes out unexamined
    assert res.action == "redact" and res.record["t"].endswith("[PHONE] ")
    assert res.findings[-1].entity == "PHONE"
