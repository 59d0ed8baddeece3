"""International Bank Account Numbers, validated by country format and the ISO 7064 mod 97 check."""

from __future__ import annotations

from stdnum import iban

from bastion.policies.detectors.base import Detector, Hit, bounded


class IbanDetector(Detector):
    entity = "IBAN"
    candidate_kinds = ("alnum",)
    priority = 20

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        if not text[start + 2 : start + 4].isdigit():
            return []
        # The candidate may have swallowed following upper-case words: shorten group by group.
        stop = end
        while stop - start >= 14:
            if bounded(text, start, stop) and iban.is_valid(text[start:stop]):
                return [Hit(start, stop, self)]
            cut = text.rfind(" ", start, stop)
            if cut <= start:
                break
            stop = cut
        return []
