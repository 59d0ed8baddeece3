"""The cheap pre-filter shared by all built-in detectors.

One regex with one named group per *candidate kind* is run once over all strings of a record (joined
with NUL, which no branch can cross). Each branch starts with a literal or a small character class so the
regex engine skips quickly over ordinary prose; the exact checks (checksums, phone metadata,
``ipaddress``) run only on what it returns.

Invariant relied on by the raw-line fast path of the engine: no branch uses a lookbehind, and no branch
contains ``"``, ``\\``, newline, tab or other characters that JSON escapes. So every candidate in a decoded
string is also a candidate in the raw JSON text of the line (when the line has no ``\\u`` / ``\\/`` escapes).
"""

from __future__ import annotations

import re

# Order matters: at one position the first branch that matches wins.
CANDIDATE_PATTERNS: dict[str, str] = {
    # From the '@' forwards; the local part is found backwards by the email detector.
    "email": r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,63}(?![\w-])",
    "ipv4": r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\d])",
    # Digit runs with common separators: phone numbers, card numbers, national ids (with an optional
    # final check letter, e.g. Spanish DNI 12345678Z).
    "number": r"\+?\(?\d(?:[ \u00a0.\-/()]{0,3}\d){5,40}(?:[ -]?[A-Z](?!\w))?",
    # Letter-led identifiers: IBAN, Spanish NIE, Italian codice fiscale.
    "alnum": (
        r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]){10,34}"
        r"|[XYZ]\d{7}-?[A-Z]"
        r"|[A-Z]{6}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z]"
    ),
    # From the first ':' of an IPv6 address; the leading hex group is found backwards.
    "ipv6": r":[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*",
}

NUMBER_RE = re.compile(CANDIDATE_PATTERNS["number"])


def combined_pattern(kinds: set[str]) -> re.Pattern[str] | None:
    """One regex over the given kinds, in the canonical order, or None when no kind is needed."""
    parts = [f"(?P<{kind}>{pattern})" for kind, pattern in CANDIDATE_PATTERNS.items() if kind in kinds]
    if not parts:
        return None
    return re.compile("|".join(parts))
