"""Numbers written out digit by digit in words: "four one one one one one ...", "null eins sieben sechs ...".

Spelling a card, phone or id number as words is an old way around a detector that reads digits. A run of at
least seven tokens, each a digit word in one of the languages below (or "double"/"triple" before one, or a
group of digits) with at least three words among them, is read as the number it spells, and that number is
validated by the detectors of digit numbers, with the text around it as their context ("my card is ...",
"call me on ..."). The engine redacts the words that spell what a detector accepts (see
``PolicyEngine._spelled_run``); a run that spells nothing a detector accepts is left alone. An IBAN is read
aloud with its letters: the country code before the run and a bank code's letters inside it ("my IBAN is G B
eight two W E S T one two ..."; :func:`iban_readings`), as in a call-centre transcript.

Languages: English, German, French, Spanish, Italian, Dutch, Portuguese, Swedish and Polish, the languages of
the corpus in ``bench/``. Words are matched in ASCII case only ("FOUR", "Vier"); a word with a non-ASCII letter
in capitals ("FÜNF") is not read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from itertools import pairwise
from typing import NamedTuple

from bastion.policies.detectors.normalize import ASCII_LOWER

DIGIT_WORDS: dict[str, str] = {}
for _digit, _words in enumerate(
    [
        "zero oh null zéro cero nul nulo noll",
        "one eins un uno een één um ett en jeden",
        "two zwei zwo deux dos due twee dois två dwa",
        "three drei trois tres tre drie três trzy",
        "four vier quatre cuatro quattro quatro fyra cztery",
        "five fünf cinq cinco cinque vijf fem pięć",
        "six sechs seis sei zes sex sześć",
        "seven sieben sept siete sette zeven sete sju siedem",
        "eight acht huit ocho otto oito åtta osiem",
        "nine neun neuf nueve nove negen nio dziewięć",
    ]
):
    for _word in _words.split():
        DIGIT_WORDS[_word] = str(_digit)
_REPEAT = {"double": 2, "triple": 3}
_PLUS = "plus"

# longest first, so that "sechs" is not read as "sex" + "chs" and "nulo" not as "nul" + "o"
_WORD = "|".join(sorted((re.escape(w) for w in DIGIT_WORDS), key=len, reverse=True))
_TOKEN = rf"(?:(?:double|triple) )?(?:{_WORD})(?![^\W\d_])|[0-9]{{1,4}}(?![0-9])"
_SEP = r"(?:, ?| |-| - )"
#: A run led by a digit word (or "plus"); no lookbehind and no character JSON escapes (the raw-line fast
#: path relies on it, see ``candidates.py``).
PATTERN = rf"(?ai:(?:plus )?(?:(?:double|triple) )?(?:{_WORD})(?![^\W\d_])(?:{_SEP}(?:{_TOKEN})){{6,}})"
_PREFIX = rf"(?:{_WORD})(?:{_SEP}(?:(?:double|triple) )?(?:{_WORD}|[0-9]{{1,4}})){{2}}"
#: For Hyperscan: a digit word, then two more tokens (a necessary condition for :data:`PATTERN`).
HS_PATTERN = f"(?i){_PREFIX}".encode()
#: The same for ``re``, on UTF-8 bytes with ASCII capitals made small (:data:`ASCII_LOWER`): far cheaper than
#: :data:`PATTERN`, which ``re`` tries at every letter.
SCREEN = re.compile(_PREFIX.encode())


def may_occur(text: str) -> bool:
    """False when no :data:`PATTERN` run can occur in ``text`` (a screen for engines without Hyperscan)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: the pattern decides
        return True
    return SCREEN.search(data.translate(ASCII_LOWER)) is not None


_TOKENS = re.compile(
    rf"(?ai:(?P<plus>plus )|(?:(?P<repeat>double|triple) )?(?P<word>{_WORD})(?![^\W\d_])|(?P<digits>[0-9]{{1,4}}))"
)
MIN_WORDS = 3  # fewer: a number with a word or two beside it, which the digit pass reads


class Spelled(NamedTuple):
    """The number a run spells: ``number`` is its digits with ", " where the run has a comma (so a card and
    an expiry date stay two numbers), ``owner[i]`` the ``(start, end)`` in the text of the token that wrote
    ``number[i]`` (``None`` for the separators)."""

    number: str
    owner: list[tuple[int, int] | None]
    start: int  # where the first token starts


def read(text: str, start: int, end: int) -> Spelled | None:
    """The number the run ``text[start:end]`` (a :data:`PATTERN` match) spells, or None when it has fewer than
    :data:`MIN_WORDS` words or starts inside a word."""
    parts: list[str] = []
    owner: list[tuple[int, int] | None] = []
    words = 0
    first = -1
    pos = start
    for m in _TOKENS.finditer(text, start, end):
        if first < 0:
            if m.start() > 0 and text[m.start() - 1].isalnum():
                continue  # "someone one two ...": the run starts at the next token
            first = m.start()
        elif "," in text[pos : m.start()]:
            parts.append(", ")
            owner.extend((None, None))
        pos = m.end()
        span = (m.start(), m.end())
        if m.group("plus"):
            if parts:
                return None  # (not produced by PATTERN)
            parts.append("+")
            owner.append((m.start(), m.start() + len(_PLUS)))
            continue
        word = m.group("word")
        if word is not None:
            digit = DIGIT_WORDS[word.lower()]
            count = _REPEAT[m.group("repeat").lower()] if m.group("repeat") else 1
            parts.append(digit * count)
            owner.extend([span] * count)
            words += 1
        else:
            parts.append(m.group("digits"))
            owner.extend([span] * len(m.group("digits")))
    if words < MIN_WORDS or first < 0:
        return None
    number = "".join(parts)
    if _counting(number):
        return None
    return Spelled(number, owner, first)


# An IBAN read aloud: its country code (two letters, or two spelled apart: "D E"), then digit words, digit
# groups and groups of capital letters (a bank code: "GB two nine N W B K six zero ...", "NL nine one ABNA ..."),
# no more tokens than an IBAN has characters after its country code (32).
_IBAN_TOKEN = rf"(?ai:(?:double|triple) )?(?ai:{_WORD})(?![^\W\d_])|[0-9]{{1,4}}(?![0-9])|[A-Z]{{1,4}}(?![A-Za-z])"
IBAN_ALOUD = re.compile(rf"(?<![^\W\d_])(?P<country>[A-Za-z] ?[A-Za-z])(?:{_SEP}(?:{_IBAN_TOKEN})){{1,32}}")
_IBAN_TOKENS = re.compile(
    rf"(?ai:(?P<repeat>double|triple) )?(?P<word>(?ai:{_WORD}))(?![^\W\d_])"
    rf"|(?P<chars>[0-9]{{1,4}}(?![0-9])|[A-Z]{{1,4}})"
)


def iban_readings(text: str, start: int, end: int) -> Iterator[tuple[int, str, list[int]]]:
    """The readings as an IBAN read aloud that reach into the spelled run ``text[start:end]``, from each
    country code at most 80 characters before it ("my IBAN is G B ...": from "is", then from "G B"):
    ``(where it starts, its characters, where each character's token ends)``."""
    pos = max(0, start - 80)
    while (m := IBAN_ALOUD.search(text, pos, end)) is not None and m.start() <= start:
        pos = m.start() + 1
        if m.end() <= start:
            continue
        chars = [c for c in m.group("country") if c != " "]
        ends = [m.start("country") + 1, m.end("country")]
        for t in _IBAN_TOKENS.finditer(text, m.end("country"), m.end()):
            if t.group("word") is not None:
                count = _REPEAT[t.group("repeat").lower()] if t.group("repeat") else 1
                written = DIGIT_WORDS[t.group("word").lower()] * count
            else:
                written = t.group("chars")
            chars.extend(written)
            ends.extend([t.end()] * len(written))
        yield m.start(), "".join(chars).upper(), ends


def _counting(number: str) -> bool:
    """Whether the digits count up or down one by one ("zero one two three ...", "eins zwei drei ..."): a
    language lesson or a countdown, not a number (0123456789 passes the NHS check)."""
    digits = [int(c) for c in number if c.isdigit()]
    steps = {b - a for a, b in pairwise(digits)}
    return steps in ({1}, {-1})
