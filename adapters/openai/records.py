"""The record formats OpenAI accepts for fine-tuning (openai SDK 3.x types, fine_tuning/*_method).

- supervised (chat): ``{"messages": [{"role": ..., "content": ...}, ...], "tools"?: [...], ...}``
- reinforcement: ``{"messages": [...], <any extra fields the grader references>}``
- preference (DPO): ``{"input": {"messages": [...], "tools"?: [...]}, "preferred_output": [messages],
  "non_preferred_output": [messages]}``
- legacy completions (babbage-002 / davinci-002): ``{"prompt": "...", "completion": "..."}``

The policy engine scans every string of every record whatever its shape; this check only makes a
malformed record a clear gateway error (record number, what is missing) instead of a late upstream one.
"""

from __future__ import annotations

import json
from typing import Any

from bastion.adapters import chat_records as chat

FORMATS = ("chat", "reinforcement", "preference", "completion")
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


#: OpenAI's message types are open (name, tool_calls, refusal, ...): the role is checked, not the fields
CHAT = chat.ChatFormat("OpenAI's chat format", None, tuple(sorted(ROLES)))


def _messages_problem(value: Any, key: str) -> str | None:
    return chat.messages_problem(value, key, CHAT.head_problem)


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a fine-tuning record OpenAI accepts, or None. Never quotes record content."""
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    if "messages" in record:
        return _messages_problem(record["messages"], "messages")
    if "preferred_output" in record or "non_preferred_output" in record:
        missing = [k for k in ("input", "preferred_output", "non_preferred_output") if k not in record]
        if missing:
            return "a preference (DPO) record needs " + ", ".join(repr(k) for k in missing)
        inp = record["input"]
        if not isinstance(inp, dict):
            return "'input' must be an object with 'messages'"
        return (
            _messages_problem(inp.get("messages"), "input.messages")
            or _messages_problem(record["preferred_output"], "preferred_output")
            or _messages_problem(record["non_preferred_output"], "non_preferred_output")
        )
    if "prompt" in record and "completion" in record:
        if not isinstance(record["prompt"], str) or not isinstance(record["completion"], str):
            return "'prompt' and 'completion' must be strings"
        return None
    return (
        "not a fine-tuning record: expected 'messages' (chat / reinforcement), a preference pair "
        "('input', 'preferred_output', 'non_preferred_output') or 'prompt' + 'completion'"
    )


BATCH_URLS = frozenset(
    {"/v1/chat/completions", "/v1/embeddings", "/v1/responses", "/v1/completions", "/v1/moderations"}
)


def batch_problem(record: Any) -> str | None:
    """A Batch API request line: ``{"custom_id", "method": "POST", "url", "body": {...}}``."""
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    extra = set(record) - {"custom_id", "method", "url", "body"}
    if extra:
        return "a batch request line has only 'custom_id', 'method', 'url' and 'body'"
    if not isinstance(record.get("custom_id"), str):
        return "'custom_id' must be a string"
    if record.get("method") != "POST":
        return "'method' must be POST"
    if record.get("url") not in BATCH_URLS:
        return "'url' must be one of " + ", ".join(sorted(BATCH_URLS))
    if not isinstance(record.get("body"), dict):
        return "'body' must be an object (the request to run)"
    return None


def evals_problem(record: Any) -> str | None:
    """An evals data line: ``{"item": {...}, "sample"?: {...}}``."""
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    if not isinstance(record.get("item"), dict):
        return "an evals record needs an 'item' object"
    if set(record) - {"item", "sample"}:
        return "an evals record has only 'item' and 'sample'"
    return None


def object_problem(record: Any) -> str | None:
    return None if isinstance(record, dict) else "each line must be a JSON object"


PROBLEMS = {
    "fine-tune": record_problem,
    "batch": batch_problem,
    "evals": evals_problem,
    "user_data": object_problem,
    "assistants": object_problem,
}


class RecordChecker:
    """Checks the scanner's output JSONL, line by line, as it is produced (bounded: one line buffered).

    ``problem``: the record shape of the upload's purpose; ``remote_images``: whether image URLs that
    point outside are accepted (data: URIs are always decoded and checked).
    """

    def __init__(self, problem: Any = None, *, remote_images: str = "deny") -> None:
        self._problem_of = problem or record_problem
        self._remote_images = remote_images
        self._partial = bytearray()
        self.records = 0
        self.problem: tuple[int, str] | None = None

    def feed(self, data: bytes) -> None:
        if self.problem is not None or not data:
            return
        self._partial += data
        start = 0
        buf = self._partial
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            self._line(bytes(buf[start:nl]))
            start = nl + 1
            if self.problem is not None:
                break
        del buf[:start]

    def finish(self) -> None:
        if self._partial and self.problem is None:
            self._line(bytes(self._partial))
        self._partial = bytearray()

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        self.records += 1
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            self.problem = (self.records, "the line is not valid JSON")
            return
        problem = self._problem_of(record)
        if problem is None:
            from bastion.gateway.images import check_images

            problem = check_images(record, self._remote_images)
        if problem is not None:
            self.problem = (self.records, problem)
