"""S3's XML: the error shape, the few result documents the gateway writes, and parsing what it reads."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeET

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

    from bastion.gateway.errors import Refusal

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def s3_error(refusal: Refusal) -> tuple[str, bytes]:
    """``<Error><Code/><Message/><RequestId/></Error>``: what botocore parses into ClientError."""
    message = refusal.client_message  # includes the hint
    body = (
        f"{HEAD}<Error><Code>{escape(refusal.kind)}</Code><Message>{escape(message)}</Message>"
        f"<RequestId>{secrets.token_hex(8).upper()}</RequestId></Error>"
    )
    return "application/xml", body.encode()


def document(root: str, **fields: str) -> bytes:
    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
    return f'{HEAD}<{root} xmlns="{NS}">{inner}</{root}>'.encode()


def parse(raw: bytes) -> Element | None:
    """A parsed document (entities and DTDs refused by defusedxml), or None if it is not XML."""
    try:
        root: Element = SafeET.fromstring(raw)
    except Exception:  # defusedxml raises several types; none of them is worth more than "not XML"
        return None
    return root


def local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def child_text(node: Element, name: str) -> str | None:
    for c in node:
        if local(c.tag) == name:
            return c.text or ""
    return None


__all__ = ["NS", "child_text", "document", "escape", "local", "parse", "s3_error"]
