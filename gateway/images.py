"""Images inside records and request bodies (vision fine-tuning, chat content parts).

An ``image_url`` that points outside (``https://…``) makes the provider fetch data the gateway never
saw: refused unless the operator allows remote images. A ``data:`` URI is decoded and checked: an
image type the providers accept (PNG, JPEG, WEBP, GIF) whose bytes match the declared type, at most
:data:`MAX_IMAGE_BYTES`. Reasons never quote the URL.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

MAX_IMAGE_BYTES = 10 * 1024 * 1024
_DATA_URI = re.compile(r"data:(?P<type>image/[a-z0-9.+-]+);base64,(?P<data>[A-Za-z0-9+/=\s]*)", re.S)
_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/jpg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


def image_problem(url: Any) -> str | None:
    if not isinstance(url, str):
        return "an image_url must be a string"
    if url[:5].lower() != "data:":
        if url[:8].lower() == "https://" or url[:7].lower() == "http://":
            return "an image URL that points outside (the provider would fetch data the gateway never saw)"
        return "an image_url that is neither a data: URI nor an http(s) URL"
    m = _DATA_URI.fullmatch(url)
    if m is None:
        return "a data: URI that is not a base64-encoded image"
    kind = m.group("type")
    if kind not in _MAGIC:
        return "an image type other than PNG, JPEG, WEBP or GIF"
    data = m.group("data")
    if len(data) > MAX_IMAGE_BYTES * 4 // 3 + 8:
        return f"an image larger than {MAX_IMAGE_BYTES} bytes"
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", data), validate=True)
    except (binascii.Error, ValueError):
        return "a data: URI whose base64 does not decode"
    if len(raw) > MAX_IMAGE_BYTES:
        return f"an image larger than {MAX_IMAGE_BYTES} bytes"
    if not raw.startswith(_MAGIC[kind]) or (kind == "image/webp" and raw[8:12] != b"WEBP"):
        return "a data: URI whose bytes are not the declared image type"
    return None


def check_images(doc: Any, remote: str = "deny", *, limit: int = 100_000) -> str | None:
    """The first problem with an image in ``doc`` (any depth), or None."""
    stack = [doc]
    seen = 0
    while stack:
        node = stack.pop()
        seen += 1
        if seen > limit:
            return None
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "image_url":
                    url = value.get("url") if isinstance(value, dict) else value
                    problem = image_problem(url)
                    if problem is not None and not (remote == "allow" and problem.startswith("an image URL")):
                        return problem
                stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    return None
