"""A custom regular expression with its own entity type (e.g. internal project codes)."""

from __future__ import annotations

import re
from re import _constants, _parser  # type: ignore[attr-defined]
from typing import Any

from bastion.policies.detectors.base import Detector, Hit

# Opcodes whose outcome depends on text outside the match: anchors (^ $ \A \Z \b \B) and look-arounds.
_CONTEXT_OPS = frozenset({_constants.AT, _constants.ASSERT, _constants.ASSERT_NOT})


def context_free(pattern: str, flags: int = 0) -> bool:
    """True when whether ``pattern`` matches ``text[i:j]`` depends on ``text[i:j]`` alone (no anchors,
    word boundaries or look-arounds). Such a pattern matches somewhere in a string exactly when it matches
    somewhere in any text containing that string, which is what the raw-line pre-filter relies on."""
    try:
        tree = _parser.parse(pattern, flags)
    except Exception:  # anything the parser does not take: not provably context-free
        return False
    return _walk(tree)


def _walk(node: Any) -> bool:
    if isinstance(node, _parser.SubPattern):
        return all(op not in _CONTEXT_OPS and _walk(av) for op, av in node)
    if isinstance(node, (list, tuple)):
        return all(_walk(x) for x in node)
    return True


class RegexDetector(Detector):
    priority = 60

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        flags = re.IGNORECASE if spec.ignore_case else 0
        self.pattern = re.compile(spec.pattern, flags)
        # Without anchors and look-arounds the pattern can pre-filter a raw JSON line, provided the line has
        # no backslash at all (then every decoded string is a substring of the raw line; see the engine).
        self.raw_safe = context_free(spec.pattern, flags)

    def find(self, text: str) -> list[Hit]:
        return [Hit(m.start(), m.end(), self) for m in self.pattern.finditer(text) if m.end() > m.start()]
