"""UK National Insurance numbers (NINO): two prefix letters, six digits, a suffix letter A-D.

python-stdnum has no NINO module and the number has no check digit, so validity is HMRC's allocation
rules: the first letter is not D, F, I, Q, U or V; the second is not D, F, I, O, Q, U or V; the prefixes
BG, GB, KN, NK, NT, TN and ZZ are never issued. Written with or without spaces ("AB 12 34 56 C").
"""

from __future__ import annotations

import re

_SHAPE = re.compile(r"([A-Z])([A-Z])([0-9]{6})([A-D])")
_NOT_FIRST = frozenset("DFIQUV")
_NOT_SECOND = frozenset("DFIOQUV")
_NEVER = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def compact(number: str) -> str:
    return number.replace(" ", "").upper()


def is_valid(number: str) -> bool:
    m = _SHAPE.fullmatch(compact(number))
    if m is None:
        return False
    first, second = m.group(1), m.group(2)
    return first not in _NOT_FIRST and second not in _NOT_SECOND and first + second not in _NEVER
