"""Checks of OpenAI-style chat messages in fine-tuning records, shared by the provider adapters.

Mistral, Fireworks, Together and OpenAI all take ``{"messages": [{"role", "content", ...}], "tools"?}``
records, with differences in the roles and message fields they accept; a :class:`ChatFormat` carries those
differences. The policy engine scans every string of every record whatever its shape; these checks only
turn a malformed record into a clear gateway error (where, what is wrong). They never quote record content.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ROLES = ("assistant", "system", "tool", "user")
#: checks one message at ``where`` (e.g. ``messages[3]``): why it is not acceptable, or None
MessageCheck = Callable[[Any, str], str | None]
TOOLS_SHAPE = "a list of tool definitions ({'type': 'function', 'function': {...}})"


@dataclass(frozen=True)
class ChatFormat:
    """One provider's chat message format.

    ``format_name``: how messages name it ("Mistral's chat format"); ``keys``: the message fields it knows
    (``None``: any field is accepted); ``roles``: the roles it knows, listed in that order in messages.
    """

    format_name: str
    keys: frozenset[str] | None
    roles: tuple[str, ...] = ROLES

    def head_problem(self, msg: Any, where: str) -> str | None:
        """An object, with a known role and only known fields."""
        if not isinstance(msg, dict):
            return f"'{where}' must be an object with 'role' and 'content'"
        if msg.get("role") not in self.roles:
            return f"'{where}.role' must be one of {', '.join(self.roles)}"
        if self.keys is not None and set(msg) - self.keys:
            allowed = ", ".join(sorted(self.keys))
            return f"'{where}' has a field {self.format_name} does not know (allowed: {allowed})"
        return None

    def message_problem(self, msg: Any, where: str) -> str | None:
        """:meth:`head_problem`, then: ``tool_calls`` a non-empty list of ``{'function': {'name', 'arguments'}}``
        on an assistant message, else ``content`` a string or list of parts; ``weight`` 0 or 1, on assistant
        messages only."""
        problem = self.head_problem(msg, where)
        if problem is not None:
            return problem
        role = msg["role"]
        calls = msg.get("tool_calls")
        if calls is not None:
            if role != "assistant" or not isinstance(calls, list) or not calls:
                return f"'{where}.tool_calls' must be a non-empty list on an assistant message"
            for j, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or "arguments" not in fn:
                    return f"'{where}.tool_calls[{j}]' must be {{'id', 'type', 'function': {{'name', 'arguments'}}}}"
        elif not isinstance(msg.get("content"), (str, list)):
            return f"'{where}.content' must be a string or a list of content parts"
        if "weight" in msg and (role != "assistant" or msg["weight"] not in (0, 1)):
            return f"'{where}.weight' is 0 or 1, on assistant messages only"
        return None


def messages_problem(value: Any, where: str, check: MessageCheck, *, role: str | None = None) -> str | None:
    """``value`` a non-empty list of messages, each passing ``check`` (and of ``role`` when given)."""
    if not isinstance(value, list) or not value:
        return f"'{where}' must be a non-empty list of messages"
    for i, msg in enumerate(value):
        problem = check(msg, f"{where}[{i}]")
        if problem is not None:
            return problem
        if role is not None and msg.get("role") != role:
            return f"'{where}[{i}].role' must be '{role}'"
    return None


def tools_problem(tools: Any, where: str = "tools") -> str | None:
    """``tools`` absent (None) or a list of objects."""
    if tools is None or (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        return None
    return f"'{where}' must be {TOOLS_SHAPE}"


__all__ = ["ROLES", "TOOLS_SHAPE", "ChatFormat", "MessageCheck", "messages_problem", "tools_problem"]
