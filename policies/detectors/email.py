"""Email addresses: candidate from the '@' forwards (domain + TLD), local part found backwards."""

from __future__ import annotations

from bastion.policies.detectors.base import Detector, Hit

_LOCAL_CHARS = frozenset(".!#$%&'*+/=?^`{|}~-")
_MAX_LOCAL = 64


class EmailDetector(Detector):
    entity = "EMAIL"
    candidate_kinds = ("email",)
    priority = 10

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        i = start
        floor = max(0, start - _MAX_LOCAL)
        while i > floor and (text[i - 1].isalnum() or text[i - 1] == "_" or text[i - 1] in _LOCAL_CHARS):
            i -= 1
        while i < start and text[i] in ".'`{|}~":  # a local part does not start with these
            i += 1
        if i == start or text[start - 1] == ".":
            return []
        return [Hit(i, end, self)]
