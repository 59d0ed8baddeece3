"""Classification raised from findings: a policy's ``classify`` rules (see
:class:`~bastion.policies.model.ClassifyRule`) applied to one record."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bastion.policies.detectors.lexicon import trie_regex
from bastion.policies.model import Policy


class Classifier:
    """Compiled ``classify`` rules of one policy."""

    def __init__(self, policy: Policy) -> None:
        self._rules: list[tuple[frozenset[str], WordStarts, int]] = []
        for rule in policy.classify:
            words = WordStarts(" ".join(k.split()) for k in rule.keywords)
            self._rules.append((frozenset(rule.entities), words, policy.rank(rule.classification)))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def rank(self, rank: int, entities: set[str], texts: Iterable[str]) -> int:
        """``rank`` raised by every rule whose entities and keywords occur in the record."""
        pending = [(pattern, r) for ents, pattern, r in self._rules if r > rank and ents & entities]
        if not pending:
            return rank
        # One search per rule over all strings joined with NUL, which no keyword holds and which the
        # start-of-word look-behind takes as a word boundary (one search per string cost ~0.2 ms a record).
        joined = "\x00".join(texts)
        lowered = joined.lower()
        for words, r in sorted(pending, key=lambda p: -p[1]):
            if r > rank and words.search(joined, lowered):
                rank = r
        return rank


class WordStarts:
    """Words or phrases at the start of a word, any case ('diagnos' in 'Diagnose'): a trie of the lower-cased
    words run over the lower-cased text (see :mod:`bastion.policies.detectors.lexicon`), or a case-insensitive
    twin where lower-casing changes the text's length."""

    def __init__(self, words: Iterable[str]) -> None:
        body = r"(?<![^\W_])" + trie_regex(sorted({w.lower() for w in words}))
        self._pattern = re.compile(body)
        self._caseless = re.compile(body, re.IGNORECASE)

    def search(self, text: str, lowered: str) -> bool:
        if len(lowered) == len(text):
            return self._pattern.search(lowered) is not None
        return self._caseless.search(text) is not None
