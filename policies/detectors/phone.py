"""Phone numbers, validated by Google's libphonenumber metadata (``phonenumbers``).

Numbers written with ``+`` (or ``00``) and a country code are recognised whatever the configured regions;
national formats (``030 1234567``, ``06 12 34 56 78``, ``(415) 555-2671``) are tried for every configured
region, whatever the order they are listed in. A cheap screen on the region's metadata (national prefix,
possible lengths, number pattern) picks the regions worth parsing; a candidate is confirmed by ``parse`` +
``is_valid_number``. A value that is nothing but 10-15 digits (a JSON number such as
``"phone": 4915123456789``) is also tried as an international number without its ``+``. A run holding
several numbers (or a number next to other digits) is split by the engine, which tries every sub-run of
its digit groups.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from phonenumbers import (
    NumberParseException,
    PhoneMetadata,
    ValidationResult,
    is_possible_number_with_reason,
    is_valid_number,
    parse,
)

from bastion.policies.detectors.base import Detector, Hit, bounded
from bastion.policies.detectors.context import glued_label, last_word_before

_NON_DIGITS = re.compile(r"[^0-9]")
_ODD_SEPARATORS = re.compile(r"[_ ]+")  # libphonenumber does not take underscores; runs of spaces are one


class _Screen(NamedTuple):
    region: str
    national_prefix: str
    prefix_optional: bool  # North American numbers are written without their trunk prefix "1"
    lengths: frozenset[int]
    pattern: re.Pattern[str]


def _screen(region: str) -> _Screen:
    md = PhoneMetadata.metadata_for_region(region)
    if md is None or md.general_desc is None:  # pragma: no cover - regions are validated by the model
        raise ValueError(f"no phone metadata for region {region}")
    desc = md.general_desc
    return _Screen(
        region,
        md.national_prefix or "",
        md.country_code == 1,
        frozenset(desc.possible_length or ()),
        re.compile(desc.national_number_pattern or "[0-9]+"),
    )


class PhoneDetector(Detector):
    entity = "PHONE"
    candidate_kinds = ("number",)
    digit_range = (6, 17)
    priority = 90  # after the checksummed identifiers: a valid IBAN/card/ID is reported as that

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.regions: list[str] = list(spec.regions)
        self._screens = [_screen(r) for r in self.regions]

    def _regions_for(self, window: str) -> list[str]:
        digits = _NON_DIGITS.sub("", window)
        if not 6 <= len(digits) <= 17:
            return []
        if window.startswith("+") or digits.startswith("00"):
            return self.regions[:1]  # the country code decides; the region is not used
        out = []
        for sc in self._screens:
            nsn = digits
            if sc.national_prefix and nsn.startswith(sc.national_prefix):
                nsn = nsn[len(sc.national_prefix) :]
            elif sc.national_prefix and not sc.prefix_optional:
                continue  # written nationally, a number of this region starts with its trunk prefix
            if len(nsn) in sc.lengths and sc.pattern.fullmatch(nsn):
                out.append(sc.region)
        return out

    def takes_part(self, text: str, start: int, end: int) -> bool:
        """Inside a longer digit run ("2024-01-15 10:30", "1.234.567,89", "v1.20.3334"), only a number
        written with an international prefix or a trunk prefix (``+49 30 ...``, ``030 ...``) counts: any
        6-8 digits are a valid number somewhere, and there is no checksum to tell."""
        return text[start] in "+0"

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        window = text[start:end]
        if window[0] == "(" and window.count("(") > window.count(")"):
            return []  # "(0049 30 901820)": the engine retries without the bracket, which is prose
        if not bounded(text, start, end) or window[-1].isalpha():
            return []  # (a final letter is an id's check letter or the next word, not a vanity number)
        # the written form first (cheap, and it rules out most digit runs), then the metadata screen
        written_in = self._written_in(text, start, end)
        regions = [r for r in self._regions_for(window) if r in written_in] if written_in else []
        written = _ODD_SEPARATORS.sub(" ", window)
        for region in regions:
            try:
                number = parse(written, region)
            except NumberParseException:
                continue
            if is_valid_number(number) or (window[0] == "+" and _possible(number)):
                return [Hit(start, end, self)]
        if _whole_value(text, start, end) and _E164_DIGITS.fullmatch(window):
            # A whole value that is only digits ("phone": 4915123456789, a JSON number scanned as its
            # digits): an international number written without its "+".
            try:
                number = parse("+" + window, None)
            except NumberParseException:  # pragma: no cover - the shape is checked above
                return []
            if is_valid_number(number):
                return [Hit(start, end, self)]
        return []

    def _written_in(self, text: str, start: int, end: int) -> list[str]:
        """The regions in which ``text[start:end]`` is written as a phone number: any 6-9 digits are valid
        somewhere (DK, NO, LU, AT), so ticket, order, claim and customer numbers, dates and prices would be.
        Asked before the (costly) metadata validation, which then runs only for these regions.

        In order: the international form says yes; a phone word just before it ("Tel.", "call me on",
        "mon numéro") says yes; a date shape says no; after a business prefix glued to it (``#``, ``PO-``,
        ``INV-``) or another label word ("Invoice", "Claim no.", "LOINC", "version") only a national number
        written in groups with its trunk prefix (``030 901820``) is one; otherwise the trunk prefix of the
        region (``0301234567``) or digit groups of 2-4 digits (``612 34 56 78``, ``(415) 555-2671``).
        A bare run of digits with none of these is not reported."""
        window = text[start:end]
        if window[0] == "+" or window.startswith("00"):
            return self.regions  # the international form: written as nothing but a phone number
        # a business prefix glued to it counts as a label word that is not a phone word ("qty/030 901820"
        # is still a phone written nationally in groups; "PO-0301234567" is not)
        label = "glued" if glued_label(text, start) else last_word_before(text, start)
        if label == "phone":
            return self.regions
        if in_date(text, start, end):
            return []
        groups = _GROUPS.findall(window)
        if label is None and len(groups) >= 2 and all(2 <= len(g) <= 4 for g in groups):
            return self.regions
        if label is not None and len(groups) < 2:
            return []  # another kind of number is named just before: only an unmistakable phone
        digits = _NON_DIGITS.sub("", window)  # ("qty 030 901820"; not "Claim no. 0301234567")
        return [sc.region for sc in self._screens if sc.national_prefix and digits.startswith(sc.national_prefix)]


def _possible(number: Any) -> bool:
    """Whether a number written with ``+`` has a length its country's numbers have. libphonenumber's
    validity follows the ranges its metadata knows to be allocated; a ``+`` and a country code already say
    that the writer meant a phone number, and a range allocated after this metadata, or one it calls
    unused, is still somebody's number (``+44 7700 900123``). Eight national digits at least: in countries
    with numbers of any length (Germany's are 4 to 15 digits) a short run would be "possible" too."""
    return (
        len(str(number.national_number)) >= 8 and is_possible_number_with_reason(number) == ValidationResult.IS_POSSIBLE
    )


_E164_DIGITS = re.compile(r"[1-9][0-9]{9,14}")
_GROUPS = re.compile(r"[0-9]+")
# Dates in their common written forms (day-month-year, year-month-day; 2- or 4-digit years), and ranges of
# years ("the 2020-2021 season", "1999/2000")
_DATE = re.compile(
    r"(?:0?[1-9]|[12][0-9]|3[01])([./-])(?:0?[1-9]|1[0-2])\1(?:19|20)?[0-9]{2}"
    r"|(?:19|20)[0-9]{2}([./-])(?:0?[1-9]|1[0-2])\2(?:0?[1-9]|[12][0-9]|3[01])"
    r"|(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12][0-9]|3[01])/(?:19|20)?[0-9]{2}"
    r"|(?:19|20)[0-9]{2}[/-](?:19|20)[0-9]{2}"
)
_DATE_CHARS = frozenset("0123456789./-")


def in_date(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is, or lies inside, a date written with digits ("14.01.2024" holds
    "01.2024", which is a valid number in some region)."""
    lo, hi = start, end
    while lo > 0 and text[lo - 1] in _DATE_CHARS:
        lo -= 1
    while hi < len(text) and text[hi] in _DATE_CHARS:
        hi += 1
    token = text[lo:hi].strip("./-")
    return _DATE.fullmatch(token) is not None


def _whole_value(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a whole string of the record (strings are joined with NUL)."""
    return (start == 0 or text[start - 1] == "\x00") and (end == len(text) or text[end] == "\x00")
