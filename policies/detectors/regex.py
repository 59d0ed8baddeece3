"""A custom regular expression with its own entity type (e.g. internal project codes)."""

from __future__ import annotations

import re
from typing import Any

from bastion.policies.detectors.base import Detector, Hit


class RegexDetector(Detector):
    priority = 60
    raw_safe = False  # anchors and look-arounds mean nothing on raw JSON text

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.pattern = re.compile(spec.pattern, re.IGNORECASE if spec.ignore_case else 0)

    def find(self, text: str) -> list[Hit]:
        return [Hit(m.start(), m.end(), self) for m in self.pattern.finditer(text) if m.end() > m.start()]
