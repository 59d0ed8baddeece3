"""Payment card numbers (PAN): 13-19 digits, a known issuer prefix, and a valid Luhn check digit.

Any number separator may sit between the digits (spaces, dashes, dots, slashes, underscores; the engine
matches on the normalised view, so zero-width characters and exotic spaces are gone), and the number may be
glued to letters ("card4111111111111111") but not to other digits.
"""

from __future__ import annotations

import re

from stdnum import luhn

from bastion.policies.detectors.base import Detector, Hit, digit_bounded

# Issuer identification ranges: Visa, Mastercard (51-55, 2221-2720), Amex, Diners, Discover, JCB,
# UnionPay, Maestro.
_IIN = re.compile(
    r"4|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|30[0-5]|3[689]|6011|64[4-9]|65|35(?:2[89]|[3-8]\d)|62|5[06-9]|6\d"
)
_SEPARATORS = re.compile(r"[ ._/\-]")


class PaymentCardDetector(Detector):
    entity = "PAYMENT_CARD"
    candidate_kinds = ("number",)
    digit_range = (13, 19)
    priority = 30

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        window = text[start:end]
        compact = _SEPARATORS.sub("", window)
        if not (13 <= len(compact) <= 19 and compact.isdigit()):
            return []
        if not _IIN.match(compact) or not luhn.is_valid(compact):
            return []
        if not digit_bounded(text, start, end):
            return []
        return [Hit(start, end, self)]
