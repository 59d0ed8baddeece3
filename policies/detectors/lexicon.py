"""Small shared pieces for the context-driven detectors (dates of birth, names, addresses): character
classes built from Unicode data (``re`` has no ``\\p{Lu}``), and fast matching of word lists.

Python's ``re`` tries the branches of an alternation one after the other and is slow with
``IGNORECASE``; a word list is therefore compiled as a *trie* of its lower-cased words (shared prefixes
are tried once) and run case-sensitively over the lower-cased text (``str.lower`` keeps the length for
almost all text; when it does not, a case-insensitive twin of the pattern runs on the text itself).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

# Every upper-case and every lower-case letter below U+0250 (Latin, Latin-1, Latin Extended-A/B): the
# scripts of the EU languages written in Latin letters. Built once from ``str.isupper``/``str.islower``.
UPPER = "".join(ch for ch in map(chr, range(0x41, 0x250)) if ch.isupper() and ch.isalpha())
LOWER = "".join(ch for ch in map(chr, range(0x61, 0x250)) if ch.islower() and ch.isalpha())
UPPER_CLASS = "[" + re.escape(UPPER) + "]"
LOWER_CLASS = "[" + re.escape(LOWER) + "]"
# A capitalised word: "Müller", "O'Neil", "Jean-Luc", "DUPONT" (all capitals too, as in French forms).
CAP_WORD = rf"{UPPER_CLASS}(?:{LOWER_CLASS}+|{UPPER_CLASS}+)?(?:[-'’]{UPPER_CLASS}?{LOWER_CLASS}+)*"


_Trie = dict[str, "_Trie"]


def trie_regex(words: Iterable[str], *, boundary: bool = False) -> str:
    """A regex matching exactly the given words, as a trie (shared prefixes are tried once; longer words
    first). With ``boundary``, a word must not be followed by a letter or digit, except a word ending in
    '.' or ':' (an abbreviation or a label)."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: _Trie, last: str) -> str:
        alts = [_piece(ch) + build(sub, ch) for ch, sub in sorted(node.items()) if ch]
        if "" in node:
            alts.append(r"(?![^\W_])" if boundary and last not in ".:" else "")
        if len(alts) == 1:
            return alts[0]
        return "(?:" + "|".join(alts) + ")"

    return build(trie, "")


def _piece(ch: str) -> str:
    return r"\s+" if ch == " " else re.escape(ch)


class WordList:
    """Whole-word occurrences of a list of words or phrases, any case. A word ending in '.' or ':' (an
    abbreviation or a label) needs no boundary after it; spaces in phrases match any run of whitespace."""

    def __init__(self, words: Iterable[str]) -> None:
        body = r"(?<![^\W_])" + trie_regex(sorted({w.lower() for w in words}), boundary=True)
        self.pattern = re.compile(body)
        self._caseless = re.compile(body, re.IGNORECASE)

    def finditer(self, text: str, lowered: str | None = None) -> Iterator[re.Match[str]]:
        """Matches in ``text``; pass ``text.lower()`` when you have it (spans are the same)."""
        low = text.lower() if lowered is None else lowered
        if len(low) == len(text):
            return self.pattern.finditer(low)
        return self._caseless.finditer(text)

    def search(self, text: str, lowered: str | None = None) -> re.Match[str] | None:
        return next(self.finditer(text, lowered), None)


def words_pattern(words: list[str] | tuple[str, ...], *, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    """Whole-word occurrences of literal words or phrases (see :class:`WordList`) as one pattern, for
    short texts; case-insensitive by default. For hot paths use :class:`WordList`."""
    return re.compile(r"(?<![^\W_])" + trie_regex(sorted({w.lower() for w in words}), boundary=True), flags)
