"""IPv4 addresses written "defanged", as threat reports, security tickets and SOC chat write them so that no
one opens them by accident: ``81[.]2[.]69[.]160``, ``81(.)2(.)69(.)160``, ``81[dot]2[dot]69[dot]160``,
``10.20.30[.]40``. A reader sees the address; a model trained on it learns it.

A run of four groups of one to three digits joined by dots, at least one of them in brackets (a ``.`` or the
word "dot" in square, round or curly brackets, with a space on either side or none), is read with every
bracketed dot as ``.`` and asked of the IP address detector (``PolicyEngine._defanged_ip``); the hit covers
the run as written. Like the candidate patterns, :data:`PATTERN` has no lookbehind and no character JSON
escapes.
"""

from __future__ import annotations

import re

#: A dot written in brackets.
DOT = r"(?: ?[\[({](?:\.|dot|DOT|Dot) ?[\])}] ?)"
_GROUP = "[0-9]{1,3}"
_EITHER = rf"(?:\.|{DOT})"
#: The run: four groups of digits joined by dots, at least one of them in brackets (the first such is found
#: after none, one or two plain dots).
PATTERN = (
    rf"{_GROUP}(?:{DOT}{_GROUP}(?:{_EITHER}{_GROUP}){{2}}|\.{_GROUP}{DOT}{_GROUP}{_EITHER}{_GROUP}"
    rf"|\.{_GROUP}\.{_GROUP}{DOT}{_GROUP})"
)
#: A digit right before a bracketed dot: the pre-filters' condition (every run the reader takes holds one),
#: written for ``re`` and Hyperscan alike.
ADJACENT = r"[0-9] ?[\[({](?:\.|[Dd][Oo][Tt]) ?[\])}]"
_ADJACENT = re.compile(ADJACENT)
_DOT = re.compile(DOT)
_DOT_THEN_DIGIT = re.compile(rf"(?:\.|{DOT})[0-9]")


def may_occur(text: str) -> bool:
    """False when no address this module reads can occur in ``text`` (where no Hyperscan kind gate asks)."""
    return _ADJACENT.search(text) is not None


def reading(text: str, start: int, end: int) -> str | None:
    """The run ``text[start:end]`` with its bracketed dots read as ``.``; None when it has none, or when it
    is part of a longer run of digit groups ("1.81[.]2[.]69[.]160", "81[.]2[.]69[.]160[.]7"): a version
    number or an OID, as the IP detector sees a dotted run with more than four groups."""
    run = text[start:end]
    if _DOT.search(run) is None:
        return None
    if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._])}"):
        return None
    if end < len(text) and (text[end].isalnum() or text[end] == "_" or _DOT_THEN_DIGIT.match(text, end)):
        return None
    return _DOT.sub(".", run)
