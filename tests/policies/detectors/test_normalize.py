"""The normalised view's table of changed characters."""

from __future__ import annotations

import json
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.policies import JsonlScanner, PolicyEngine, load_policy
from bastion.policies.detectors.normalize import (
    UNASSIGNED_PLANES,
    View,
    changed_chars,
    changed_in,
    needs_view,
    raw_needs_view,
)

ENGINE = PolicyEngine(load_policy("pack:eu-gdpr"))


def test_the_planes_skipped_hold_no_character_the_view_changes() -> None:
    # changed_chars does not ask about these planes (nothing there is assigned or it is private use); with
    # a Unicode version that assigns something there, this fails and the skip list must shrink.
    assert changed_in(list(UNASSIGNED_PLANES)) == []


def test_the_table_holds_the_characters_of_each_kind() -> None:
    table = changed_chars()
    for ch in "\u200b\u00ad\ufeff\u0663\uff11\u00a0\u202f\u2013\u2212\uff20\u3002\uff61":
        assert ch in table, hex(ord(ch))
    for ch in ("é", "ß", "\ue000", "\U000f0000", "\U0001f600"):
        assert ch not in table, hex(ord(ch))


@pytest.mark.parametrize(
    ("text", "view"),
    [
        ("4\u0300111", "4111"),  # a mark on a digit: removed
        ("DE89 \u20dd3704", "DE89 3704"),  # an enclosing mark after a space
        ("\u0301x", "x"),  # at the start
        ("\uff14\u0301\u200b\u0302 1", "4 1"),  # after a changed character, a run of them
        ("ju\u0308rgen", "jürgen"),  # NFD: composed as NFC does
        ("e\u0323\u0301", unicodedata.normalize("NFC", "e\u0323\u0301")),  # two marks, reordered and composed
        ("q\u0301", "q\u0301"),  # a mark NFC does not compose: left on its letter
        ("\u0915\u093f", "\u0915\u093f"),  # a Devanagari vowel sign on its consonant
    ],
)
def test_combining_marks_in_the_view(text: str, view: str) -> None:
    assert View(text).text == view
    if view != text:  # the screens may send more texts the full way, never fewer
        assert needs_view(text) and raw_needs_view(text.encode("utf-8"))


_MIXED = st.lists(
    st.sampled_from(
        [*"aeAZ09 -.@ßéü%&#;x", "\u0301", "\u0308", "\u0323", "\u20dd", "\u200b", "\uff14", "%34", "&#52;", "%C3%A9"]
    ),
    max_size=24,
).map("".join)  # (with web escapes, whole and in pieces)


@settings(max_examples=400, deadline=None)
@given(_MIXED)
def test_nfc_and_nfd_text_have_the_same_view(text: str) -> None:
    nfc = View(unicodedata.normalize("NFC", text)).text
    assert View(text).text == nfc
    assert View(unicodedata.normalize("NFD", text)).text == nfc


@settings(max_examples=200, deadline=None)
@given(_MIXED)
def test_every_view_span_maps_back_inside_the_text(text: str) -> None:
    view = View(text)
    for a in range(len(view.text)):
        for b in range(a + 1, len(view.text) + 1):
            s, e = view.span(a, b)
            assert 0 <= s < e <= len(text)


@pytest.mark.parametrize(
    ("text", "entity", "redacted"),
    [
        ("mail ju\u0308rgen.mu\u0308ller@example.de ok", "EMAIL", "mail [EMAIL] ok"),
        ("IBAN DE89 3704 0044 0532 0130 0\u03000.", "IBAN", "IBAN [IBAN]."),
        ("card 4\u0300111 1111 1111 1111\u0301 x", "PAYMENT_CARD", "card [PAYMENT_CARD] x"),
        ("\u20ddDE89370400440532013000", "IBAN", "\u20dd[IBAN]"),
    ],
)
def test_marks_do_not_hide_personal_data(text: str, entity: str, redacted: str) -> None:
    """Found the same way by the record scan and the JSONL scanner (whose raw-line screens must send the line
    the full way), and redacted with the marks that sat on it."""
    res = ENGINE.scan_record({"t": text})
    assert entity in {f.entity for f in res.findings}
    if res.action == "redact":
        assert res.record["t"] == redacted
    scanner = JsonlScanner(ENGINE, source="t")
    for ascii_only in (False, True):
        line = (json.dumps({"t": text}, ensure_ascii=ascii_only) + "\n").encode()
        out = scanner.feed(line)
        if res.action == "redact":
            assert json.loads(out)["t"] == redacted
    scanner.finish()
    assert entity in scanner.summary.entity_counts
