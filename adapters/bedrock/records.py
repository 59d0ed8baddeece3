"""The JSONL record formats Bedrock model customization reads from S3 (PROVIDERS.md §9.3).

- text (Titan Text, Llama 3.1 non-conversational, Cohere Command): ``{"prompt": str, "completion": str}``;
- Claude 3 Haiku: ``{"system"?: str, "messages": [{"role": "user"|"assistant", "content": str}, ...]}``,
  at least two messages, starting with ``user``, alternating, ending with ``assistant``, no other keys;
- Converse (``bedrock-conversation-2024``; Llama 3.2, Nova): ``{"schemaVersion": "bedrock-conversation-2024",
  "system"?: [{"text"}], "messages": [{"role", "content": [{"text"} | {"image": {"format", "source":
  {"s3Location": {"uri", "bucketOwner"?}}}} | {"video": ...}]}]}``.

Every string of a record is scanned by the policy engine whatever the format; these checks make a
malformed record a clear gateway error (record number and what is wrong, never its content).
``s3Location.uri`` values are collected: media the job would read from S3 must be objects this gateway
scanned (checked by the S3 adapter before the object is stored).
"""

from __future__ import annotations

import re
from typing import Any

from bastion.adapters.openai.records import RecordChecker

CONVERSE = "bedrock-conversation-2024"
S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][-.a-z0-9]{1,61}[a-z0-9])(?:/(?P<key>.*))?")
_MEDIA = ("image", "video", "document")
_FORMATS = "'prompt' + 'completion', Claude 'messages' (+ 'system'), or 'schemaVersion': 'bedrock-conversation-2024'"


def _claude_problem(record: dict[str, Any]) -> str | None:
    if set(record) - {"system", "messages"}:
        return "a Claude record has only 'system' and 'messages'"
    if "system" in record and not isinstance(record["system"], str):
        return "'system' must be a string"
    messages = record["messages"]
    if not isinstance(messages, list) or len(messages) < 2:
        return "'messages' must be a list of at least two messages (user, then assistant)"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"}:
            return f"'messages[{i}]' must be {{'role', 'content'}}"
        want = "user" if i % 2 == 0 else "assistant"
        if msg["role"] != want:
            return f"'messages[{i}].role' must be {want!r} (messages start with user and alternate)"
        if not isinstance(msg["content"], str):
            return f"'messages[{i}].content' must be a string"
    if len(messages) % 2:
        return "the last message must be the assistant's"
    return None


def _content_problem(block: Any, where: str, uris: list[str]) -> str | None:
    if not isinstance(block, dict) or len(block) != 1:
        return f"'{where}' must be one of {{'text'}}, {{'image'}}, {{'video'}}, {{'document'}}"
    ((kind, value),) = block.items()
    if kind == "text":
        return None if isinstance(value, str) else f"'{where}.text' must be a string"
    if kind == "reasoningContent":
        return None if isinstance(value, dict) else f"'{where}.reasoningContent' must be an object"
    if kind not in _MEDIA:
        return f"'{where}' has an unknown content type (text, image, video, document, reasoningContent)"
    source = value.get("source") if isinstance(value, dict) else None
    loc = source.get("s3Location") if isinstance(source, dict) else None
    if not isinstance(source, dict) or set(source) != {"s3Location"} or not isinstance(loc, dict):
        return (
            f"'{where}.{kind}.source' must be {{'s3Location': {{'uri', 'bucketOwner'?}}}} (inline bytes: not scanned)"
        )
    uri = loc.get("uri")
    m = S3_URI.fullmatch(uri) if isinstance(uri, str) else None
    if m is None or not m["key"]:
        return f"'{where}.{kind}.source.s3Location.uri' must be an s3://bucket/key URI"
    uris.append(m.string)
    return None


def _converse_problem(record: dict[str, Any], uris: list[str]) -> str | None:
    if set(record) - {"schemaVersion", "system", "messages"}:
        return "a bedrock-conversation-2024 record has only 'schemaVersion', 'system' and 'messages'"
    system = record.get("system", [])
    if not isinstance(system, list) or not all(
        isinstance(s, dict) and set(s) == {"text"} and isinstance(s["text"], str) for s in system
    ):
        return "'system' must be a list of {'text': <string>}"
    messages = record.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return "'messages' must be a list of at least two messages"
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"} or msg["role"] not in ("user", "assistant"):
            return f"'messages[{i}]' must be {{'role': 'user'|'assistant', 'content': [...]}}"
        content = msg["content"]
        if not isinstance(content, list) or not content:
            return f"'messages[{i}].content' must be a non-empty list of content blocks"
        for j, block in enumerate(content):
            problem = _content_problem(block, f"messages[{i}].content[{j}]", uris)
            if problem is not None:
                return problem
    return None


def record_problem(record: Any, uris: list[str] | None = None) -> str | None:
    """Why ``record`` is not a Bedrock customization record, or None; media URIs go to ``uris``."""
    found: list[str] = [] if uris is None else uris
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    if "schemaVersion" in record:
        if record["schemaVersion"] != CONVERSE:
            return f"'schemaVersion' must be {CONVERSE!r}"
        return _converse_problem(record, found)
    if "messages" in record:
        return _claude_problem(record)
    if "prompt" in record or "completion" in record:
        if set(record) != {"prompt", "completion"}:
            return "a text record is exactly {'prompt', 'completion'}"
        if not isinstance(record["prompt"], str) or not isinstance(record["completion"], str):
            return "'prompt' and 'completion' must be strings"
        return None
    return f"not a Bedrock customization record: expected {_FORMATS}"


class BedrockRecordChecker(RecordChecker):
    """The scanner's output, line by line, against the Bedrock formats; collects ``s3Location`` URIs."""

    def __init__(self) -> None:
        self.media_uris: list[str] = []
        super().__init__(lambda record: record_problem(record, self.media_uris))


__all__ = ["CONVERSE", "S3_URI", "BedrockRecordChecker", "record_problem"]
