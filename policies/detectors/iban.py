"""International Bank Account Numbers in any case and with space, dash or dot separators, validated by
country format and the ISO 7064 mod 97 check."""

from __future__ import annotations

import re

from stdnum import iban

from bastion.policies.detectors.base import Detector, Hit, bounded

_SEPARATORS = re.compile(r"[ .\-]")


class IbanDetector(Detector):
    entity = "IBAN"
    candidate_kinds = ("iban",)
    priority = 20

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        if not text[start + 2 : start + 4].isdigit():
            return []
        # The candidate may have swallowed following words or the next IBAN: shorten group by group, and
        # (for IBANs written without separators followed by letters or digits) character by character.
        stop = end
        while stop - start >= 14:
            if bounded(text, start, stop):
                compact = _SEPARATORS.sub("", text[start:stop]).upper()
                if iban.is_valid(compact):
                    return [Hit(start, stop, self)]
            cut = max(text.rfind(" ", start, stop), text.rfind("-", start, stop), text.rfind(".", start, stop))
            if cut <= start:
                break
            stop = cut
        return []
