"""Payment card numbers (PAN): 13-19 digits, a known issuer prefix, and a valid Luhn check digit.

Any number separator may sit between the digits (spaces, dashes, dots, slashes, underscores; the engine
matches on the normalised view, so zero-width characters and exotic spaces are gone), and the number may be
glued to letters ("card4111111111111111") but not to other digits.
"""

from __future__ import annotations

import re

from stdnum import ean, luhn

from bastion.policies.detectors.base import Detector, Hit, digit_bounded
from bastion.policies.detectors.context import last_word_before

# Issuer identification ranges: Visa, Mastercard (51-55, 2221-2720), Amex, Diners, Discover, JCB,
# UnionPay, Maestro.
_IIN = re.compile(
    r"4|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[47]|30[0-5]|3[689]|6011|64[4-9]|65|35(?:2[89]|[3-8]\d)|62|5[06-9]|6\d"
)
_SEPARATORS = re.compile(r"[ ._/\-]")


# The lengths each scheme issues (by leading digits; first match wins): Visa 13/16/19, Mastercard 16,
# Amex 15, Diners 14-19, the others 16-19; Maestro 12-19.
_LENGTHS: tuple[tuple[re.Pattern[str], frozenset[int]], ...] = (
    (re.compile(r"4"), frozenset({13, 16, 19})),
    (re.compile(r"5[1-5]|2[2-7]"), frozenset({16})),
    (re.compile(r"3[47]"), frozenset({15})),
    (re.compile(r"3[0689]"), frozenset(range(14, 20))),
    (re.compile(r"5[06-9]|6"), frozenset(range(12, 20))),
    (re.compile(r"3[5]"), frozenset(range(16, 20))),
)


class PaymentCardDetector(Detector):
    """IIN + the scheme's lengths + Luhn. A 13- or 14-digit number that is also a valid EAN-13 / GTIN-14
    barcode (one in ten that pass Luhn) is a card only with a card word just before it ("Karte", "card")."""

    entity = "PAYMENT_CARD"
    candidate_kinds = ("number",)
    digit_range = (13, 19)
    priority = 30

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        window = text[start:end]
        compact = _SEPARATORS.sub("", window)
        if not (13 <= len(compact) <= 19 and compact.isdigit()):
            return []
        if not _IIN.match(compact) or not _issued_length(compact) or not luhn.is_valid(compact):
            return []
        if not digit_bounded(text, start, end):
            return []
        if len(compact) in (13, 14) and ean.is_valid(compact) and last_word_before(text, start) != "card":
            return []
        return [Hit(start, end, self)]


def _issued_length(number: str) -> bool:
    for prefix, lengths in _LENGTHS:
        if prefix.match(number):
            return len(number) in lengths
    return True
