"""IPv4 and IPv6 addresses, validated by :mod:`ipaddress`."""

from __future__ import annotations

import ipaddress
from typing import Any

from bastion.policies.detectors.base import Detector, Hit
from bastion.policies.detectors.candidates import IPV4_SHAPE

_HEX = frozenset("0123456789abcdefABCDEF")


class IpAddressDetector(Detector):
    entity = "IP_ADDRESS"
    candidate_kinds = ("number", "ipv6")
    digit_range = (4, 12)
    priority = 40

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.versions = set(spec.versions)
        self.include_private: bool = spec.include_private

    def validate(self, text: str, start: int, end: int, kind: str) -> list[Hit]:
        if kind == "number":
            if 4 not in self.versions or not IPV4_SHAPE.fullmatch(text, start, end):
                return []
            if start > 0 and (text[start - 1].isalnum() or text[start - 1] in "._"):
                return []
            if end < len(text) and (text[end].isalnum() or text[end] == "_"):
                return []
            if end + 1 < len(text) and text[end] == "." and text[end + 1].isdigit():
                return []
            try:
                address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(text[start:end])
            except ValueError:
                return []
            return [Hit(start, end, self, "ipv4")] if self._wanted(address) else []
        if 6 not in self.versions:
            return []
        # Walk back over the first hex group ("fe80" in "fe80::1").
        i = start
        while i > 0 and start - i < 4 and text[i - 1] in _HEX:
            i -= 1
        if i > 0 and (text[i - 1].isalnum() or text[i - 1] in ":_"):
            return []
        stop = end
        while stop > start and text[stop - 1] in ".":
            stop -= 1
        if stop < len(text) and (text[stop].isalnum() or text[stop] == "_"):
            return []
        candidate = text[i:stop]
        if candidate.count(":") < 2:
            return []
        try:
            address = ipaddress.IPv6Address(candidate)
        except ValueError:
            return []
        return [Hit(i, stop, self, "ipv6")] if self._wanted(address) else []

    def _wanted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if address.is_unspecified:
            return False
        return self.include_private or address.is_global
