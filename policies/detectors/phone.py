"""Phone numbers, validated by Google's libphonenumber metadata (``phonenumbers.PhoneNumberMatcher``).

Numbers written with ``+`` (or ``00``) and a country code are recognised whatever the configured regions;
national formats (``030 1234567``, ``06 12 34 56 78``) are tried for each configured region. A cheap
screen on the region's metadata (national prefix, possible lengths, number pattern) picks the regions
worth parsing. A candidate that is one number as a whole is confirmed by ``parse`` + ``is_valid_number``;
otherwise ``PhoneNumberMatcher`` (slower) looks for numbers inside it.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from phonenumbers import Leniency, NumberParseException, PhoneMetadata, PhoneNumberMatcher, is_valid_number, parse

from bastion.policies.detectors.base import Detector, Hit, bounded

_NON_DIGITS = re.compile(r"[^0-9]")


class _Screen(NamedTuple):
    region: str
    national_prefix: str
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
        frozenset(desc.possible_length or ()),
        re.compile(desc.national_number_pattern or "[0-9]+"),
    )


class PhoneDetector(Detector):
    entity = "PHONE"
    candidate_kinds = ("number",)
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
            if sc.national_prefix:
                if not nsn.startswith(sc.national_prefix):
                    continue  # written nationally, a number of this region starts with its trunk prefix
                nsn = nsn[len(sc.national_prefix) :]
            if len(nsn) in sc.lengths and sc.pattern.fullmatch(nsn):
                out.append(sc.region)
        return out

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        window = text[start:end]
        if window[0] == "(" and window.count("(") > window.count(")"):
            return []  # "(0049 30 901820)": the engine retries without the bracket, which is prose
        regions = self._regions_for(window)
        for region in regions:
            try:
                number = parse(window, region)
            except NumberParseException:
                continue
            if is_valid_number(number):
                return [Hit(start, end, self)] if bounded(text, start, end) else []
        if " " not in window and "/" not in window:
            return []
        # Several numbers (or a number and other digits) in one run: let the matcher pick them out.
        for region in regions or self.regions[:1]:
            hits = []
            for match in PhoneNumberMatcher(window, region, leniency=Leniency.VALID, max_tries=10):
                s, e = start + match.start, start + match.end
                if text[s] == "(" and text.count("(", s, e) > text.count(")", s, e):
                    s += 1  # "(0049 30 901820)": the bracket belongs to the prose
                if bounded(text, s, e):
                    hits.append(Hit(s, e, self))
            if hits:
                return hits
        return []
