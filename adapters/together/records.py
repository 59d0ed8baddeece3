"""The JSONL record formats Together's fine-tuning accepts (docs.together.ai "Data preparation").

- conversational: ``{"messages": [{"role", "content", "weight"?, ...}], "tools"?}`` - roles system, user,
  assistant, tool; assistant messages may carry ``reasoning`` / ``reasoning_content`` and ``tool_calls``;
  ``weight`` (0 or 1) marks which assistant turns are trained on;
- instruction: ``{"prompt": str, "completion": str}``;
- preference (DPO): ``{"input": {"messages", "tools"?}, "preferred_output": [one assistant message],
  "non_preferred_output": [one assistant message]}``;
- generic text: ``{"text": str}``.

A record with fields of two formats is refused (Together rejects such files too). The policy engine scans
every string of every record whatever its shape; this check only turns a malformed record into a clear
gateway error (record number, which field) instead of a late upstream one. It never quotes record content.
"""

from __future__ import annotations

from typing import Any

from bastion.adapters import chat_records as chat

ROLES = chat.ROLES
MESSAGE_KEYS = frozenset(
    {"role", "content", "weight", "name", "tool_calls", "tool_call_id", "reasoning", "reasoning_content"}
)
FORMATS = {
    "conversational": frozenset({"messages", "tools"}),
    "instruction": frozenset({"prompt", "completion"}),
    "preference": frozenset({"input", "preferred_output", "non_preferred_output"}),
    "generic text": frozenset({"text"}),
}
_MARKERS = {"messages": "conversational", "prompt": "instruction", "input": "preference", "text": "generic text"}


class _TogetherChat(chat.ChatFormat):
    """Together's messages: ``tool_calls`` any list, ``weight`` on any turn, ``reasoning`` on assistant turns."""

    def message_problem(self, msg: Any, where: str) -> str | None:
        problem = self.head_problem(msg, where)
        if problem is not None:
            return problem
        role = msg["role"]
        calls = msg.get("tool_calls")
        if calls is not None and (role != "assistant" or not isinstance(calls, list)):
            return f"'{where}.tool_calls' must be a list, on an assistant message"
        if calls is None and not isinstance(msg.get("content"), (str, list)):
            return f"'{where}.content' must be a string or a list of content parts"
        if "weight" in msg and (isinstance(msg["weight"], bool) or msg["weight"] not in (0, 1)):
            return f"'{where}.weight' must be 0 or 1"
        if role != "assistant" and ({"reasoning", "reasoning_content"} & set(msg)):
            return f"'{where}': only assistant messages carry 'reasoning'"
        return None


CHAT = _TogetherChat("Together's format", MESSAGE_KEYS)


def _messages_problem(value: Any, where: str) -> str | None:
    return chat.messages_problem(value, where, CHAT.message_problem)


def _answer_problem(value: Any, where: str) -> str | None:
    if not isinstance(value, list) or len(value) != 1:
        return f"'{where}' must be a list with exactly one assistant message"
    problem = CHAT.message_problem(value[0], f"{where}[0]")
    if problem is None and value[0].get("role") != "assistant":
        problem = f"'{where}[0].role' must be 'assistant'"
    return problem


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a Together fine-tuning record, or None."""
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    kinds = sorted({_MARKERS[k] for k in record if k in _MARKERS})
    if not kinds:
        return (
            "not a Together fine-tuning record: expected 'messages' (conversational), 'prompt' + 'completion' "
            "(instruction), 'input' + 'preferred_output' + 'non_preferred_output' (preference) or 'text'"
        )
    if len(kinds) > 1:
        return f"the record mixes two formats ({' and '.join(kinds)}); Together rejects such files"
    kind = kinds[0]
    extra = set(record) - FORMATS[kind]
    if extra:
        return f"a {kind} record has only {', '.join(repr(k) for k in sorted(FORMATS[kind]))}"
    if kind == "conversational":
        return _messages_problem(record["messages"], "messages") or chat.tools_problem(record.get("tools"))
    if kind == "instruction":
        if not isinstance(record.get("prompt"), str) or not isinstance(record.get("completion"), str):
            return "an instruction record needs 'prompt' and 'completion', both strings"
        return None
    if kind == "preference":
        inp = record["input"]
        if not isinstance(inp, dict) or set(inp) - {"messages", "tools"}:
            return "'input' must be an object with 'messages' (and optionally 'tools')"
        missing = [k for k in ("preferred_output", "non_preferred_output") if k not in record]
        if missing:
            return "a preference record needs " + " and ".join(repr(k) for k in missing)
        return (
            _messages_problem(inp.get("messages"), "input.messages")
            or chat.tools_problem(inp.get("tools"), "input.tools")
            or _answer_problem(record["preferred_output"], "preferred_output")
            or _answer_problem(record["non_preferred_output"], "non_preferred_output")
        )
    if not isinstance(record.get("text"), str):
        return "'text' must be a string"
    return None
