"""The cheap pre-filter shared by all built-in detectors.

One regex per *candidate kind* is run over the normalised view (see :mod:`.normalize`) of all strings of a
record (joined with NUL, which no pattern can cross). Each pattern starts with a literal or a small
character class so the regex engine skips quickly over ordinary prose; the exact checks (checksums, phone
metadata, ``ipaddress``) run only on what it returns.

Invariant relied on by the raw-line fast path of the engine: no pattern uses a lookbehind, and no pattern
contains ``"``, ``\\``, newline, tab or other characters that JSON escapes, except the line and cell breaks
that the odd-separator runs take between digit groups (``odd_separators.BREAKS``). So every candidate in a
decoded string is also a candidate in the raw JSON text of the line (when the line has no ``\\u`` / ``\\/``
escapes, no character that normalisation changes, and no escaped break between digits:
``odd_separators.ESCAPED_BREAK``).
"""

from __future__ import annotations

import re

from bastion.policies.detectors.defanged import PATTERN as DEFANGED_IP_PATTERN
from bastion.policies.detectors.encoded import PATTERN as BASE64_PATTERN
from bastion.policies.detectors.lookalike import ALNUM_PATTERN as LOOKALIKE_ALNUM_PATTERN
from bastion.policies.detectors.lookalike import IBAN_PATTERN as LOOKALIKE_IBAN_PATTERN
from bastion.policies.detectors.lookalike import PATTERN as LOOKALIKE_PATTERN
from bastion.policies.detectors.odd_separators import NATIONAL_PHONE_PATTERN as ODD_NATIONAL_PHONE_PATTERN
from bastion.policies.detectors.odd_separators import PATTERN as ODD_SEPARATORS_PATTERN
from bastion.policies.detectors.odd_separators import PHONE_PATTERN as ODD_PHONE_PATTERN
from bastion.policies.detectors.spelled import PATTERN as SPELLED_PATTERN

# Characters between the digit groups of a number ("4111 1111", "030/901820", "4111_1111", "(030) 90").
NUMBER_SEPARATORS = " ._/()-"
_SEP = r"[ ._/()\-]"

# The "at" and "dot" of an obfuscated e-mail address: a word in brackets, or "@" / "." in brackets. The words
# in the pack's languages too, as web pages write addresses ("anna (at) firma (punkt) de", "anna (arroba)
# empresa (punto) es"); in ASCII letters of any case (``(?ai:...)``: not "ı" for "i", as the pre-filters).
AT_WORDS = ("at", "arroba", "arobase", "chiocciola", "klammeraffe", "apenstaartje")
DOT_WORDS = ("dot", "punkt", "punto", "punt", "kropka", "point")
#: Written as words, without brackets, an address in another language needs an at-word no prose uses
#: ("ana arroba empresa punto es"): "punto de", "Punkt", "punt" are common words, and "at" stands in much text.
#: Its dots may then be any of these (not "point": "at this point de facto").
WORD_AT_WORDS = AT_WORDS[1:]
WORD_DOT_WORDS = DOT_WORDS[:-1]
_AT = rf"[\[({{<] ?(?:(?ai:{'|'.join(AT_WORDS)})|@) ?[\])}}>]"
_BRACKET_DOT = rf" ?[\[({{<] ?(?:(?ai:{'|'.join(DOT_WORDS)})|\.) ?[\])}}>] ?"
_DOT = rf"(?:{_BRACKET_DOT}| \. |\.)"  # (or a dot with a space on each side)

_ALNUM_CAPITALS = (
    r"[A-Z](?:[0-9]{7}-?[A-Za-z]"
    r"|[A-Z]{5}[0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Za-z]"
    r"|[A-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-Da-d])"
)
# The letter-led codes written in small letters: NIE, codice fiscale, compact NINO; each holds the
# digit-led tail beside it.
_ALNUM_SMALL = (
    (r"[a-z][0-9]{7}-?[A-Za-z]", r"[0-9]{7}-?[A-Za-z]"),
    (r"[a-z]{6}[0-9]{2}[a-z][0-9]{2}[a-z][0-9]{3}[a-z]", r"[0-9]{2}[a-z][0-9]{2}[a-z][0-9]{3}[a-z]"),
    (r"[a-z]{2}[0-9]{6}[A-Da-d]", r"[0-9]{6}[A-Da-d]"),
    # a NINO in small letters written in its groups ("ab 12 34 56 c"): the detector takes it only after a
    # word for an identity number ("NINO", "national insurance"); "at 12 34 56 a" can be prose
    (r"[a-z]{2} [0-9]{2} [0-9]{2} [0-9]{2} [A-Da-d]", r"[0-9]{2} [0-9]{2} [0-9]{2} [A-Da-d]"),
)
# "anna at example dot com": an address written in words. Only with "dot" before a top-level domain that
# is no common word ("look at the dot it makes" is prose), the "at" and "dot" each between single spaces;
# the domain matched in ASCII case only (IGNORECASE alone would take "fı" for "fi", which the raw-line
# pre-filter does not).
_WORD_DOT = r" (?:dot|DOT|Dot) "
_WORD_DOT_ANY = rf" (?:dot|DOT|Dot|(?ai:{'|'.join(WORD_DOT_WORDS[1:])})) "
WORD_TLDS = (
    "com|org|net|edu|gov|info|biz|io|eu|de|fr|es|nl|pl|se|pt|ch|dk|fi|ie|uk|cz|sk|hu|ro|bg|gr|hr|si|lt|lv|ee|lu|ca|au"
)
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"  # a label of a domain name
_SPACED_DOT = r" \. "
ALNUM_PATTERN = _ALNUM_CAPITALS + "".join(f"|{code}" for code, _ in _ALNUM_SMALL)
# For the Hyperscan pre-filter, which needs only a necessary condition: the small-letter codes by their
# digit-led tails. Led by a small letter, as in ALNUM_PATTERN, they made Hyperscan's pass over prose five
# times slower (a small letter is most characters).
ALNUM_PREFILTER = _ALNUM_CAPITALS + "".join(f"|{tail}" for _, tail in _ALNUM_SMALL)

# Each pattern starts with a literal or a small ASCII character class, so that the regex engine skips
# ordinary prose quickly (one pass per kind is much faster than one alternation, which has no prefix).
CANDIDATE_PATTERNS: dict[str, str] = {
    # From the '@' forwards; the local part is found backwards by the email detector.
    # A space after the '@' is allowed ("anna.berg@ example.com", "anna.berg @ example.com"); a space
    # before it only with one after it: "thanks @anna.berg" is a mention. Dots with a space on each side
    # ("anna.berg@example . com") count where a top-level domain that is no common word follows the last
    # ("@ home . Thanks" is prose); dots in brackets ("anna@example[.]com", "anna @ example [dot] com") anywhere.
    "email": (
        rf"@ ?(?:{_LABEL}(?:\.|{_SPACED_DOT}|{_BRACKET_DOT}))*{_LABEL}"
        rf"(?:\.[^\W\d_]{{2,63}}|{_SPACED_DOT}(?ai:{WORD_TLDS})|{_BRACKET_DOT}[^\W\d_]{{2,63}})(?![\w-])"
    ),
    # An address written to dodge e-mail scrapers, from its "at" token on: "anna.berg (at) example (dot) com",
    # "anna[at]example.com", "anna [@] example [.] com". The "at" needs brackets (a bare " at " is prose);
    # the local part is found backwards by the e-mail detector, the domain needs a dot and a TLD.
    "email_at": (rf"{_AT} ?[^\W_][\w-]{{0,62}}(?:{_DOT}[^\W_][\w-]{{0,62}})*{_DOT}[^\W\d_]{{2,63}}(?![\w-])"),
    # An address written in words, from its "at" on: "anna at example dot com", "ANNA AT EXAMPLE DOT DE",
    # or from an '@' with words for its dots ("anna @ example dot com"); the local part ("anna", "anna.berg",
    # "anna dot berg") is found backwards by the e-mail detector. In the other languages' words only after an
    # at-word no prose uses ("ana arroba empresa punto es"; see WORD_AT_WORDS).
    "email_words": (
        rf"(?:(?:at|AT|At) |@ ?)[^\W_][\w-]{{0,62}}(?:{_WORD_DOT}[^\W_][\w-]{{0,62}})*"
        rf"{_WORD_DOT}(?ai:{WORD_TLDS})(?![\w-])"
        rf"|(?ai:{'|'.join(WORD_AT_WORDS)}) [^\W_][\w-]{{0,62}}(?:{_WORD_DOT_ANY}[^\W_][\w-]{{0,62}})*"
        rf"{_WORD_DOT_ANY}(?ai:{WORD_TLDS})(?![\w-])"
    ),
    # IBAN in any case, groups separated by single spaces, dashes or dots: from its check digits on (a
    # pattern led by a letter class is slow in ``re``); the engine checks for the two letters before.
    "iban": r"[0-9]{2}(?:[ .\-]?[A-Za-z0-9]){10,34}",
    # Letter-led identifiers: Spanish NIE, Italian codice fiscale, UK National Insurance number; their check
    # letter in either case ("X2482300w"), and written in small letters ("x2482300w", "rccmnl83s18d969h",
    # "ab123456c"). In small letters a codice fiscale needs its digits where they usually are (no omocodia
    # letters) and a NINO its compact form: "at 12 34 56 a" is prose.
    "alnum": ALNUM_PATTERN,
    # From the first ':' of an IPv6 address; the leading hex group is found backwards.
    "ipv6": r":[0-9A-Fa-f]{0,4}:[0-9A-Fa-f:.]*",
    # A number spelled out digit by digit in words ("four one one one ..."), read and validated as the digits
    # it spells (see spelled.py); taken whenever digit numbers are.
    "spelled": SPELLED_PATTERN,
    # A number with letters that look like digits ("O2O 7946 O958", "4lll 1lll ..."), read with them as digits
    # and validated as those (see lookalike.py); taken whenever digit numbers are.
    "lookalike": LOOKALIKE_PATTERN,
    # A card number with separators no number uses ("4111*1111*1111*1111"), asked of the card detector with
    # them read as spaces (see odd_separators.py); taken whenever digit numbers are.
    "odd_separators": ODD_SEPARATORS_PATTERN,
    # IBANs with look-alike letters among their digits, read by their country's format (see lookalike.py);
    # taken whenever IBANs are.
    "lookalike_iban": LOOKALIKE_IBAN_PATTERN,
    # NIEs and codici fiscali with look-alike letters where their digits stand (see lookalike.py); taken
    # whenever letter-led codes are.
    "lookalike_alnum": LOOKALIKE_ALNUM_PATTERN,
    # Phone numbers with their international prefix and odd separators ("+34~887~321~455"), read as phones
    # with them as spaces (see odd_separators.py); taken whenever digit numbers are.
    "odd_phone": ODD_PHONE_PATTERN,
    # National phone numbers with odd separators ("tel 08~847~00~52"), read after a word for a phone only
    # (see odd_separators.py); taken whenever digit numbers are.
    "odd_national_phone": ODD_NATIONAL_PHONE_PATTERN,
    # IPv4 addresses with dots in brackets ("81[.]2[.]69[.]160"), read with them as dots (see defanged.py);
    # taken whenever digit numbers are.
    "defanged_ip": DEFANGED_IP_PATTERN,
    # Base64 of text ("YW5uYUBleGFtcGxlLmNvbQ=="), scanned again as the text it encodes (see encoded.py): the
    # pattern marks a run (its case steps), the engine reads the run around it; taken whenever any built-in
    # kind is.
    "base64": BASE64_PATTERN,
    # Runs of ASCII digits with separators (up to 8 between groups: "4111    1111"): phone numbers, card
    # numbers, national ids (with an optional final check letter, either case, e.g. Spanish DNI 12345678Z
    # or 12345678z), and dotted IPv4 addresses. The engine tries the run as a whole and then every sub-run
    # of its digit groups.
    "number": rf"[+(0-9](?:{_SEP}{{0,8}}[0-9]){{3,}}(?:[ -]?[A-Za-z](?![0-9A-Za-z_]))?",
}
COMPILED: dict[str, re.Pattern[str]] = {kind: re.compile(p) for kind, p in CANDIDATE_PATTERNS.items()}
IPV4_SHAPE = re.compile(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")
# A canonical UUID (8-4-4-4-12 hex digits, not glued to other letters or digits): provider ids (Mistral
# files and jobs, many others) are UUIDs, and their digit groups are random. Read as numbers they are
# valid phones, cards or ids by chance (about 3 % of random UUIDs), so a job naming its training file
# would be redacted or refused at random. No written form of a phone, card or id is UUID-shaped, so the
# number pass does not look inside one (see :func:`mask_uuids`).
UUID_SHAPE = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}(?![0-9A-Za-z])"
)


def mask_uuids(text: str) -> str:
    """``text`` with every canonical UUID replaced by as many ``x`` (positions kept) for the number pass."""
    if "-" not in text:
        return text
    return UUID_SHAPE.sub(lambda m: "x" * (m.end() - m.start()), text)


# The digit groups of a number run (a leading "+" belongs to the first group), and a final check letter.
NUMBER_TOKEN = re.compile(r"\+?[0-9]+|[A-Za-z]")


def passes(kinds: set[str]) -> list[tuple[str, re.Pattern[str]]]:
    """The compiled candidate regexes for the given kinds, in canonical order."""
    if "number" in kinds:
        kinds = kinds | {"spelled", "lookalike", "odd_separators", "odd_phone", "odd_national_phone", "defanged_ip"}
    if "iban" in kinds:
        kinds = kinds | {"lookalike_iban"}
    if "alnum" in kinds:
        kinds = kinds | {"lookalike_alnum"}
    if kinds:
        kinds = kinds | {"base64"}
    return [(kind, COMPILED[kind]) for kind in CANDIDATE_PATTERNS if kind in kinds]
