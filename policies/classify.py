"""Classification raised from findings: a policy's ``classify`` rules (see
:class:`~bastion.policies.model.ClassifyRule`) applied to one record."""

from __future__ import annotations

import re
from collections.abc import Iterable

from bastion.policies.model import Policy


class Classifier:
    """Compiled ``classify`` rules of one policy."""

    def __init__(self, policy: Policy) -> None:
        self._rules: list[tuple[frozenset[str], re.Pattern[str], int]] = []
        for rule in policy.classify:
            words = sorted({re.escape(k.strip()).replace(r"\ ", r"\s+") for k in rule.keywords}, key=len, reverse=True)
            pattern = re.compile(r"(?<![^\W_])(?:" + "|".join(words) + ")", re.IGNORECASE)
            self._rules.append((frozenset(rule.entities), pattern, policy.rank(rule.classification)))

    def __bool__(self) -> bool:
        return bool(self._rules)

    def rank(self, rank: int, entities: set[str], texts: Iterable[str]) -> int:
        """``rank`` raised by every rule whose entities and keywords occur in the record."""
        pending = [(pattern, r) for ents, pattern, r in self._rules if r > rank and ents & entities]
        if not pending:
            return rank
        for text in texts:
            for pattern, r in pending:
                if r > rank and pattern.search(text):
                    rank = r
        return rank
