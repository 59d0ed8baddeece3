"""A list of keywords (code names, client names, ...) reported as one entity type."""

from __future__ import annotations

import re
from typing import Any

from bastion.policies.detectors.base import Detector, Hit


class KeywordsDetector(Detector):
    priority = 70

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        words = sorted({k if spec.case_sensitive else k.lower() for k in spec.keywords}, key=len, reverse=True)
        body = "|".join(re.escape(w) for w in words)
        flags = 0 if spec.case_sensitive else re.IGNORECASE
        self.pattern = re.compile(rf"(?<!\w)(?:{body})(?!\w)" if spec.whole_word else f"(?:{body})", flags)
        # Without the word boundaries, so it can pre-filter raw JSON text (where "\n" glues letters on).
        self.raw_safe = not any(ch in '"\\/' or ord(ch) < 0x20 for k in words for ch in k)
        self.raw_pattern = re.compile(f"(?:{body})", flags)

    def find(self, text: str) -> list[Hit]:
        return [Hit(m.start(), m.end(), self) for m in self.pattern.finditer(text)]
