"""Web escapes (percent-encoding, HTML character references) and Markdown's backslash escapes are read in
the normalised view: personal data written with them is found by every pre-filter, and redacted escapes and
all."""

from __future__ import annotations

import json

import pytest

from bastion.policies import JsonlScanner, PolicyEngine, load_policy
from bastion.policies.detectors import escapes
from bastion.policies.detectors.normalize import View, needs_view, raw_needs_view

EU_PACK = load_policy("pack:eu-gdpr")
ENGINES = {name: PolicyEngine(EU_PACK, prefilter=name) for name in ("re", "auto")}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("escape", "read"),
    [
        ("%40", [(0, 3, "@")]),
        ("%34%31", [(0, 3, "4"), (3, 6, "1")]),
        ("%C3%BC", [(0, 6, "ü")]),  # UTF-8 bytes: one character
        ("%E2%80%8B", [(0, 9, "\u200b")]),
        ("%C3%41", [(3, 6, "A")]),  # a lead byte without its continuation: left as written
        ("&#52;", [(0, 5, "4")]),
        ("&#52", [(0, 4, "4")]),  # without the ";", as browsers read it
        ("&#x40;", [(0, 6, "@")]),
        ("&#X40;", [(0, 6, "@")]),
        ("&commat;", [(0, 8, "@")]),
        ("&nbsp;", [(0, 6, "\u00a0")]),
        ("&nosuchname;", []),
        ("%00", []),  # a control character: never the NUL between the strings of a record
        ("&#0;", []),
        ("&#10;", []),
        ("&#1114112;", []),  # past the last code point
        ("&#xD800;", []),  # a surrogate
        ("%25", []),  # "%" and "&" are not read: each escape is decoded once
        ("&amp;", []),
        ("\\_", [(0, 2, "_")]),  # Markdown's backslash escapes of ASCII punctuation
        ("\\@", [(0, 2, "@")]),
        ("\\-", [(0, 2, "-")]),
    ],
)
def test_what_an_escape_writes(escape: str, read: list[tuple[int, int, str]]) -> None:
    assert list(escapes.decode(escape)) == read


@pytest.mark.parametrize(
    ("text", "view"),
    [
        ("anna%40example.com", "anna@example.com"),
        ("&#52;&#49;&#49;&#49;&nbsp;1111", "4111 1111"),  # read, then normalised ("&nbsp;" is a space)
        ("4111%E2%80%8B1111", "41111111"),  # an escaped zero-width space is removed as the character is
        ("&#xFF14;111", "4111"),  # a full-width digit
        ("50%25 off &amp;#64; more", "50%25 off &amp;#64; more"),
        ("&copy 2024, 100%, %zz", "&copy 2024, 100%, %zz"),
        ("a%00b", "a%00b"),
        ("anna\\_berg\\@example\\.com", "anna_berg@example.com"),
        ("4111\\-1111\\*1111", "4111-1111*1111"),
        # not read: a backslash before a letter, a space, a quote or a backslash (in a raw JSON line those
        # are its own escapes), '%' or '&'
        ('C:\\Users\\anna \\ x \\" \\\\ \\% \\&', 'C:\\Users\\anna \\ x \\" \\\\ \\% \\&'),
    ],
)
def test_the_view_reads_escapes(text: str, view: str) -> None:
    assert View(text).text == view
    if view != text:  # the screens send the text the full way
        assert needs_view(text) and raw_needs_view(text.encode())


def test_a_span_ending_in_an_escape_maps_back_over_all_of_it() -> None:
    text = "x &#52;&#49; y"
    view = View(text)
    assert view.text == "x 41 y"
    assert view.span(2, 4) == (2, 12)
    assert text[slice(*view.span(3, 4))] == "&#49;"


@pytest.mark.parametrize(
    ("text", "entity", "redacted"),
    [
        ("mail anna%40example.com please", "EMAIL", "mail [EMAIL] please"),
        ("mail anna&#64;example.com please", "EMAIL", "mail [EMAIL] please"),
        ("mail anna&commat;example&period;com please", "EMAIL", "mail [EMAIL] please"),
        ("card &#52;&#49;&#49;&#49; 1111 1111 1111 ok", "PAYMENT_CARD", None),
        ("card 4111%201111%201111%201111 ok", "PAYMENT_CARD", None),
        ("IBAN DE89&#x20;3704&#x20;0044&#x20;0532&#x20;0130&#x20;00.", "IBAN", "IBAN [IBAN]."),
        ("call +49%2030%20901820 today", "PHONE", "call [PHONE] today"),
        ("mail anna\\_berg@example.com please", "EMAIL", "mail [EMAIL] please"),  # not "anna\\[EMAIL]"
        ("mail anna@example\\.com please", "EMAIL", "mail [EMAIL] please"),
        ("card 4111\\-1111\\-1111\\-1111 ok", "PAYMENT_CARD", None),
    ],
)
@pytest.mark.parametrize("prefilter", ["re", "auto"])
def test_personal_data_in_escapes_is_found_by_every_pre_filter(
    text: str, entity: str, redacted: str | None, prefilter: str
) -> None:
    """Found by the record scan and by the JSONL scanner (whose raw-line screens must send the line the full
    way), and redacted with the whole escapes that wrote it."""
    engine = ENGINES[prefilter]
    res = engine.scan_record({"t": text})
    assert entity in {f.entity for f in res.findings}
    if redacted is not None:
        assert res.record["t"] == redacted
    else:
        assert res.action == "block"
    line = json.dumps({"t": text})
    assert engine.may_contain_line(line, line.encode())
    scanner = JsonlScanner(engine, source="t")
    out = scanner.feed((line + "\n").encode())
    scanner.finish()
    assert entity in scanner.summary.entity_counts
    if redacted is not None:
        assert json.loads(out)["t"] == redacted


def test_escapes_in_clean_text_change_nothing() -> None:
    engine = ENGINES["auto"]
    for text in ("see https://example.com/search?q=fine%20tuning&lang=en", "Fish &amp; Chips, 20%25 off"):
        res = engine.scan_record({"t": text})
        assert (res.action, res.findings, res.record) == ("allow", [], {"t": text})


@pytest.mark.parametrize("piece", ["%41", "%C3%BC", "&#52;", "\u200b", "4\u200b"])
def test_a_line_of_escapes_or_format_characters_keeps_the_view_small(piece: str) -> None:
    """A 16 MiB line may be nothing but escapes: the view must not cost hundreds of bytes per one (it took
    4.9 GB for a line of "%41" before its entries became machine integers and its regex a bounded one)."""
    import tracemalloc

    text = piece * (300_000 // len(piece))
    tracemalloc.start()
    try:
        view = View(text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert view.text == View(piece).text * (300_000 // len(piece))
    assert peak < 60 * len(text)  # bytes per character of the line: 7-21 measured (before: hundreds)
