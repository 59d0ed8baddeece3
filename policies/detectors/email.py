"""Email addresses: candidate from the '@' forwards (domain + TLD), local part found backwards.

Addresses written to dodge scrapers (``anna.berg (at) example (dot) com``, ``anna[at]example.com``) are
candidates of their own kind (``email_at``), from the bracketed "at" on; their local part is found
backwards the same way, over one space before the bracket. So are addresses written in words
(``anna dot berg at example dot com``, ``anna @ example dot com``, kind ``email_words``), an '@' with a
space after it (``anna.berg @ example.com``) and dots with a space on each side (``anna . berg@example . com``).
The "at" and "dot" may be words of the pack's languages (``anna (at) firma (punkt) de``, ``ana arroba empresa
punto es``: ``candidates.AT_WORDS``, ``candidates.DOT_WORDS``).

The local part is searched backwards over at most 64 characters; a quoted local part (``"john doe"@x.org``)
is taken whole. When the backwards search runs into a previous address (``bob@x.org?cc=alice@y.org``),
the engine passes the end of the earlier address as a floor (see :meth:`EmailDetector.validate_after`).
"""

from __future__ import annotations

import re

from bastion.policies.detectors.base import Detector, Hit

_LOCAL_CHARS = frozenset(".!#$%&'*+/=?^`{|}~-")
_NOT_FIRST = frozenset(".!#$%&'*/=?^`{|}~")  # punctuation that does not start a local part in practice
_MAX_LOCAL = 64
# the words of a local part written out before it: "anna dot berg" (at most three more words)
_WORDS_BEFORE = re.compile(r"(?:[^\W_][\w-]{0,30} (?:dot|DOT|Dot) ){1,3}$")
# the same with spaced dots: "anna . berg@example.com", "anna . berg @ example . com"
_SPACED_DOTS_BEFORE = re.compile(r"(?:[^\W_][\w-]{0,30} \. ){1,3}$")
# Words that stand before "at" in prose about a web site ("find us at example dot com", "I was at example
# dot com"): not the local part of an address written in words.
_PROSE_BEFORE_AT = frozenset(
    [
        "us", "me", "you", "him", "her", "them", "it", "we", "i", "is", "was", "were", "are", "be", "been", "being",
        "am", "look", "looking", "looked", "find", "found", "visit", "visited", "online", "available", "located",
        "based", "here", "there", "work", "works", "worked", "working", "live", "lives", "lived", "stay", "stayed",
        "arrive", "arrived", "arriving", "meet", "met", "see", "seen", "shop", "shopping", "order", "ordered", "buy",
        "bought", "sign", "signed", "log", "logged", "read", "posted", "published", "hosted", "listed", "started",
        "starting", "now", "more", "info", "information", "details", "anytime", "anywhere", "today", "tomorrow",
        "site", "website", "page",
    ]
)  # fmt: skip


def local_start(text: str, floor: int, at: int) -> int:
    """Where a local part ending at ``at`` starts when it may not start before ``floor`` (``at`` if none)."""
    i = at
    while i > floor and (text[i - 1].isalnum() or text[i - 1] == "_" or text[i - 1] in _LOCAL_CHARS):
        i -= 1
    while i < at and text[i] in _NOT_FIRST:
        i += 1
    return i


class EmailDetector(Detector):
    entity = "EMAIL"
    candidate_kinds = ("email", "email_at", "email_words")
    priority = 10

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        if kind == "email_words":  # "anna at example dot com": the "at" is a word of its own
            if text[start] == "@":  # "anna @ example dot com", "anna@example dot com"
                spaced = start > 0 and text[start - 1] == " "
                if spaced and text[start + 1 : start + 2] != " ":
                    return []  # "thanks @anna dot com": a mention
                at = start - 1 if spaced else start
            elif start < 2 or text[start - 1] != " ":
                return []
            else:
                at = start - 1
            i = local_start(text, max(0, at - _MAX_LOCAL), at)
            if i == at or text[i:at].lower() in _PROSE_BEFORE_AT:
                return []
            spelled = _WORDS_BEFORE.search(text, max(0, i - _MAX_LOCAL), i)
            return [Hit(spelled.start() if spelled else i, end, self)]
        if kind == "email_at":
            at = start - 1 if start > 0 and text[start - 1] == " " else start
            i = local_start(text, max(0, at - _MAX_LOCAL), at)
            return [Hit(i, end, self)] if i < at else []
        return self.validate_after(text, start, end, 0)

    def validate_after(self, text: str, start: int, end: int, floor: int) -> list[Hit]:
        """:meth:`validate` for a candidate whose local part may not start before ``floor``."""
        if start <= floor:
            return []
        if start + 1 < end and text[start + 1] == " ":  # "anna@ example.com", "anna @ example.com"
            at = start - 1 if text[start - 1] == " " else start
            i = local_start(text, max(floor, at - _MAX_LOCAL), at)
            return [Hit(self._spaced_start(text, floor, i), end, self)] if i < at else []
        # (a space before the '@' and none after: "thanks @anna.berg" is a mention, found by no local part)
        if text[start - 1] == '"':  # a quoted local part
            opening = text.rfind('"', max(floor, start - 1 - _MAX_LOCAL), start - 1)
            if opening >= 0 and "\x00" not in text[opening:start] and "\n" not in text[opening:start]:
                return [Hit(opening, end, self)]
            return []
        if text[start - 1] == ".":
            return []
        i = local_start(text, max(floor, start - _MAX_LOCAL), start)
        if i == start:
            return []
        return [Hit(self._spaced_start(text, floor, i), end, self)]

    @staticmethod
    def _spaced_start(text: str, floor: int, i: int) -> int:
        """Where a local part found to start at ``i`` starts when words with spaced dots stand before it
        ("anna . berg@example.com": "berg" was found)."""
        if i < 3 or text[i - 3 : i] != " . ":
            return i
        spaced = _SPACED_DOTS_BEFORE.search(text, max(floor, i - _MAX_LOCAL), i)
        return spaced.start() if spaced else i
