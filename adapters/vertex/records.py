"""Gemini tuning records (Vertex AI), checked line by line as a Cloud Storage object is scanned.

Every string in a record is scanned by the policy engine like any other JSONL upload; this module
checks the *shape*, so that what Vertex AI trains on is what the gateway scanned:

- supervised: ``{"systemInstruction"?, "contents": [{"role": "user"|"model", "parts": [...]}, ...],
  "tools"?}``; the conversation has at least one ``model`` turn;
- preference: ``{"system_instruction"|"systemInstruction"?, "contents": [... ending with a user turn],
  "completions": [{"completion": {role model, parts}, "score": 0|1}, x2]}``;
- a part is ``text``, ``inlineData`` (PNG/JPEG/WEBP images, base64, at most 10 MB: decoded and checked),
  ``functionCall`` or ``functionResponse``. ``fileData.fileUri`` makes Vertex AI read media the gateway
  never saw (``gs://`` images, audio, video, PDFs, which it cannot scan): refused unless the operator
  sets ``gateway.remote_images: allow``.

Messages never quote record content.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

ROLES = ("user", "model")
PART_KINDS = frozenset({"text", "inlineData", "fileData", "functionCall", "functionResponse"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
RECORD_FIELDS = frozenset({"contents", "systemInstruction", "system_instruction", "tools", "completions"})
FILE_DATA_REFUSED = (
    "has fileData.fileUri: Vertex AI would read that media (gs:// images, audio, video, documents) itself, and this "
    "gateway cannot scan it; media by reference is refused (put PNG/JPEG/WEBP images inline as inlineData, or ask "
    "the operator for gateway.remote_images: allow)"
)


def _part_problem(part: Any, where: str, remote_media: bool) -> str | None:
    if not isinstance(part, dict) or len(part) != 1 or next(iter(part)) not in PART_KINDS:
        return (
            f"'{where}' must be one of {{text}}, {{inlineData}}, {{fileData}}, {{functionCall}}, {{functionResponse}}"
        )
    kind, value = next(iter(part.items()))
    if kind == "text":
        return None if isinstance(value, str) else f"'{where}.text' must be a string"
    if kind in ("functionCall", "functionResponse"):
        ok = isinstance(value, dict) and isinstance(value.get("name"), str)
        return None if ok else f"'{where}.{kind}' must be an object with a 'name'"
    if kind == "fileData":
        if not isinstance(value, dict) or not isinstance(value.get("fileUri"), str):
            return f"'{where}.fileData' must be {{mimeType, fileUri}}"
        return None if remote_media else f"'{where}' {FILE_DATA_REFUSED}"
    return _inline_problem(value, where)


def _inline_problem(value: Any, where: str) -> str | None:
    from bastion.gateway.images import image_problem

    if not isinstance(value, dict) or set(value) - {"mimeType", "data"} or not isinstance(value.get("data"), str):
        return f"'{where}.inlineData' must be {{mimeType, data: <base64>}}"
    mime = value.get("mimeType")
    if mime not in IMAGE_TYPES:
        return (
            f"'{where}.inlineData' has a mimeType other than image/png, image/jpeg or image/webp: only images are "
            "accepted inline "
            "(audio, video and documents cannot be scanned)"
        )
    problem = image_problem(f"data:{mime};base64,{value['data']}")  # decoded, type and size checked
    return None if problem is None else f"'{where}.inlineData': {problem}"


def _content_problem(content: Any, where: str, remote_media: bool, roles: tuple[str, ...] = ROLES) -> str | None:
    if not isinstance(content, dict) or set(content) - {"role", "parts"}:
        return f"'{where}' must be {{role, parts}}"
    if "role" in content and content["role"] not in roles:
        return f"'{where}.role' must be one of {', '.join(roles)}"
    parts = content.get("parts")
    if not isinstance(parts, list) or not parts:
        return f"'{where}.parts' must be a non-empty list"
    for j, part in enumerate(parts):
        problem = _part_problem(part, f"{where}.parts[{j}]", remote_media)
        if problem is not None:
            return problem
    return None


def record_problem(record: Any, *, remote_media: bool = False) -> str | None:
    """Why ``record`` is not a Gemini tuning record, or None."""
    if not isinstance(record, dict):
        return "each line must be a JSON object"
    if "contents" not in record:
        return "not a Gemini tuning record: expected 'contents' (and optionally 'systemInstruction', 'tools')"
    if set(record) - RECORD_FIELDS:
        return "a Gemini tuning record has only " + ", ".join(sorted(RECORD_FIELDS))
    contents = record["contents"]
    if not isinstance(contents, list) or not contents:
        return "'contents' must be a non-empty list of {role, parts}"
    for i, content in enumerate(contents):
        problem = _content_problem(content, f"contents[{i}]", remote_media)
        if problem is not None:
            return problem
    for key in ("systemInstruction", "system_instruction"):
        if key in record:
            problem = _content_problem(record[key], key, remote_media, roles=("system", "user", "model"))
            if problem is not None:
                return problem
    tools = record.get("tools")
    if tools is not None and not (isinstance(tools, list) and all(isinstance(t, dict) for t in tools)):
        return "'tools' must be a list of tool objects ({functionDeclarations: [...]})"
    completions = record.get("completions")
    if completions is None:
        if not any(isinstance(c, dict) and c.get("role") == "model" for c in contents):
            return "a supervised record needs at least one 'model' turn in 'contents'"
        return None
    if not isinstance(completions, list) or len(completions) != 2:
        return "'completions' must be two {completion, score} objects (preference tuning)"
    if contents[-1].get("role") != "user":
        return "a preference record's 'contents' must end with a 'user' turn"
    for i, item in enumerate(completions):
        if not isinstance(item, dict) or set(item) != {"completion", "score"} or item["score"] not in (0, 1):
            return f"'completions[{i}]' must be {{completion: {{role: model, parts}}, score: 0 or 1}}"
        problem = _content_problem(item["completion"], f"completions[{i}].completion", remote_media, roles=("model",))
        if problem is not None:
            return problem
    return None


def checker(remote_media: bool) -> Callable[[Any], str | None]:
    """The record check for one upload (``gateway.remote_images`` decides about fileData media)."""

    def problem(record: Any) -> str | None:
        return record_problem(record, remote_media=remote_media)

    return problem
