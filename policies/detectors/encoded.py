"""Personal data encoded in Base64: ``YW5uYUBleGFtcGxlLmNvbQ==`` is ``anna@example.com``, and the payload of a JSON Web
Token (``eyJlbWFpbCI6...``) holds the claims of a person. A model trained on the encoding learns the data as well as
the plain text: encoding is the oldest way to get data past a filter.

A run of at least 12 Base64 characters (the standard or the URL-safe alphabet, not both, with its ``=`` padding)
that decodes to UTF-8 text with no control characters but tab and line breaks is scanned again as that text
(``PolicyEngine._encoded_run``); what is found there is found over the whole run, so redaction replaces the run.
Words and identifiers are also runs of these characters: the run must change from a small letter to a capital at
least twice, letters only counted, or once and hold a digit (``iPhoneX`` and ``html5Parser`` do, ``JavaScript`` and
``GitHub`` do not; Base64 of a dozen characters of text nearly always does). The Hyperscan pre-filters look for that
(:data:`ADJACENT`), the byte screens for one such change. Like the candidate patterns, :data:`PATTERN` has no
lookbehind and no character JSON escapes (a ``/`` may be written ``\\/`` in JSON: such lines always take the full
path).
"""

from __future__ import annotations

import base64
import binascii
import re
from itertools import islice

_CHAR = r"[A-Za-z0-9+/_\-]"
_ANY = r"[A-Za-z0-9+/_\-]*"
_STEP_PATTERN = r"[a-z][0-9+/_\-]*[A-Z]"
#: Two steps from a small letter to a capital, letters only counted, or one and a digit in the same run (every
#: run the reader takes holds them): the Hyperscan pre-filters' condition.
ADJACENT = (
    rf"{_STEP_PATTERN}{_ANY}{_STEP_PATTERN}|[0-9]{_ANY}{_STEP_PATTERN}|{_STEP_PATTERN}{_ANY}[0-9]"
    r"|[a-z][0-9+/_\-]*[0-9][0-9+/_\-]*[A-Z]"
)
#: The candidate pattern: :data:`ADJACENT` within 64 characters (``re`` would backtrack over a whole run for
#: each start, the square of a long run's length; bounded, each start costs at most a few hundred steps). It
#: marks a run; the engine reads the whole run around it (:func:`run_span`), once.
PATTERN = ADJACENT.replace("*", "{0,64}")
_STEP = re.compile(_STEP_PATTERN)  # (finditer: linear in the run)
_DIGIT = re.compile("[0-9]")
_RUN = re.compile(rf"{_CHAR}*")
_PADDING = re.compile("={0,2}")
_URL_SAFE = frozenset("-_")
_STANDARD = frozenset("+/")
_READ = frozenset("\t\n\r")
_MIN_RUN = 12


def may_occur(text: str) -> bool:
    """False when no run this module reads can occur in ``text`` (where no Hyperscan kind gate asks)."""
    return _marked(text)


def _marked(text: str) -> bool:
    """Two steps from a small letter to a capital, or one and a digit (in ``text`` as a whole)."""
    steps = sum(1 for _ in islice(_STEP.finditer(text), 2))
    return steps == 2 or (steps == 1 and _DIGIT.search(text) is not None)


def run_span(text: str, floor: int, start: int, end: int) -> tuple[int, int]:
    """The run of Base64 characters (and its padding) around a :data:`PATTERN` match ``text[start:end]``, not
    starting before ``floor`` (the end of the run read before): found backwards over a reversed copy of
    ``text[floor:start]``, so that every character is walked once however long the run."""
    back = _RUN.match(text[floor:start][::-1])
    ahead = _RUN.match(text, end)
    stop = _PADDING.match(text, ahead.end() if ahead else end)
    return start - (len(back.group()) if back else 0), stop.end() if stop else end


def decoded(run: str) -> str | None:
    """The text a run encodes, or None when it is no Base64 of text (see the module's docstring)."""
    body = run.rstrip("=")
    if len(body) < _MIN_RUN or len(body) % 4 == 1 or not _marked(body):
        return None
    chars = frozenset(body)
    url_safe = not chars.isdisjoint(_URL_SAFE)
    if url_safe and not chars.isdisjoint(_STANDARD):
        return None  # both alphabets: a path or an identifier, no encoding
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if url_safe else None, validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):  # (UnicodeDecodeError is a ValueError)
        return None
    if not all(c.isprintable() or c in _READ for c in text):
        return None
    return text
