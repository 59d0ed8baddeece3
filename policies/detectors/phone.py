"""Phone numbers, validated by Google's libphonenumber metadata (``phonenumbers.PhoneNumberMatcher``).

Numbers written with ``+`` and a country code are recognised whatever the configured regions; national
formats (``030 1234567``, ``06 12 34 56 78``) are tried for each configured region.
"""

from __future__ import annotations

from typing import Any

from bastion.policies.detectors.base import Detector, Hit, bounded
from phonenumbers import Leniency, PhoneNumberMatcher


class PhoneDetector(Detector):
    entity = "PHONE"
    candidate_kinds = ("number",)
    priority = 90  # after the checksummed identifiers: a valid IBAN/card/ID is reported as that

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.regions: list[str] = list(spec.regions)

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        window = text[start:end]
        digits = sum(ch.isdigit() for ch in window)
        if digits < 6 or digits > 17 * 2:
            return []
        regions = self.regions[:1] if window.startswith("+") else self.regions
        found: list[tuple[int, int]] = []
        for region in regions:
            for match in PhoneNumberMatcher(window, region, leniency=Leniency.VALID, max_tries=20):
                span = (start + match.start, start + match.end)
                if any(s < span[1] and span[0] < e for s, e in found):
                    continue
                if bounded(text, *span):
                    found.append(span)
            if found and len(regions) > 1 and _covers(found, start, end):
                break
        return [Hit(s, e, self) for s, e in sorted(found)]


def _covers(found: list[tuple[int, int]], start: int, end: int) -> bool:
    return sum(e - s for s, e in found) >= (end - start) * 0.8
