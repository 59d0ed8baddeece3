"""Personal data encoded in Base64 is found over the whole encoded run, by either pre-filter; words,
identifiers, hashes and encoded binary data are left alone."""

from __future__ import annotations

import base64

import pytest
from detector_helpers import (
    BOTH_PRE_FILTERS,
    EU_PACK,
    assert_card_blocked_in_a_jsonl_file,
    assert_raw_line_passes_findings,
    pack_found,
)
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bastion.policies import PolicyEngine
from bastion.policies.detectors import encoded


def b64(text: str, url_safe: bool = False) -> str:
    raw = text.encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=") if url_safe else base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("plain", "entity"),
    [
        ("anna@example.com", "EMAIL"),
        ("4111 1111 1111 1111", "PAYMENT_CARD"),
        ("call +49 30 901820", "PHONE"),
        ("IBAN DE89 3704 0044 0532 0130 00", "IBAN"),
        ('{"sub":"1","email":"anna.berg@example.com"}', "EMAIL"),  # a JSON Web Token's claims
        (b64("anna@example.com"), "EMAIL"),  # encoded twice
        ("ID X5751311T", "NATIONAL_ID"),
        ("A" * 90 + " anna@example.com", "EMAIL"),  # Base64 with no case step for 120 characters before the data
    ],
)
@pytest.mark.parametrize("url_safe", [False, True])
@BOTH_PRE_FILTERS
def test_encoded_personal_data_is_found_over_the_run(
    plain: str, entity: str, url_safe: bool, engine: PolicyEngine
) -> None:
    run = b64(plain, url_safe)
    assert pack_found(f"token: {run} (end)", engine) == [(entity, run)]


def test_the_payload_of_a_json_web_token_is_redacted() -> None:
    header, claims = b64('{"alg":"HS256"}', True), b64('{"email":"anna.berg@example.com"}', True)
    text = f"Authorization: Bearer {header}.{claims}.c2lnbmF0dXJl"
    res = EU_PACK.scan_record({"t": text})
    assert res.record["t"] == f"Authorization: Bearer {header}.[EMAIL].c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "text",
    [
        "We use JavaScript and GitHub on an iPhoneX with getElementById.",
        "sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
        "see " + b64("the weather is fine today"),  # text without personal data
        "parse it with html5ParserXyzw or iPhone15Case",
        "path /usr/local/lib/pyThon-aB/x_Y",  # both alphabets: no encoding
    ],
)
def test_what_encodes_no_personal_data_is_left_alone(text: str) -> None:
    assert pack_found(text) == []


@pytest.mark.parametrize(
    ("run", "text"),
    [
        (b64("anna@example.com"), "anna@example.com"),
        (b64("anna@example.com").rstrip("="), "anna@example.com"),  # padding may be left out
        (b64("a\u00fc\u00df@example.de", True), "a\u00fc\u00df@example.de"),
        (b64("\x00\x01 binary"), None),  # control characters: no text
        ("WDU3NTEzMTFU", "X5751311T"),  # one step from a small letter to a capital, and digits
        ("JavaScriptGitHub", None),  # one step and no digit: a word (or two)
        ("aBcDeFgHiJkLm", None),  # 13 characters: no Base64 length
        (base64.b64encode(b"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7").decode(), None),  # no UTF-8
    ],
)
def test_what_a_run_decodes_to(run: str, text: str | None) -> None:
    assert encoded.decoded(run) == text


def test_the_record_is_blocked_in_a_jsonl_file_by_either_pre_filter() -> None:
    assert_card_blocked_in_a_jsonl_file("x " + b64("card 4111 1111 1111 1111"))


_pieces = st.sampled_from(
    [b64("anna@example.com"), b64("4111 1111 1111 1111", True), "aB", "Ab", "a1B", "=", "==", "+", "/", "-", "_",
     "x", "Q", "7", " ", ".", '"', "\\n", "JavaScript", "eyJ"]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_pieces, max_size=20).map("".join))
@example(b64("anna@example.com"))
@example("Zz" + b64("anna@example.com"))
def test_the_raw_line_pre_filters_pass_every_line_with_such_a_run(text: str) -> None:
    assert_raw_line_passes_findings(text)


def test_data_encoded_many_times_is_found_without_running_out_of_stack() -> None:
    """Each decoded run is scanned with the same passes, so nesting recurses once per layer: 25 layers (the
    size grows by a third each) are read to the bottom."""
    text = "mail anna@example.com"
    for _ in range(25):
        text = b64(text)
    assert pack_found(f"x {text} y") == [("EMAIL", text)]
