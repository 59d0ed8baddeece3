"""Load a policy from YAML with precise errors: file, line, key path (``detectors[2].action``), problem."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.errors import PolicyError
from bastion.policies.model import DETECTOR_TYPES, Policy
from bastion.safe_yaml import YamlProblem, load_yaml

PACK_PREFIX = "pack:"
Loc = tuple[str | int, ...]


def list_packs() -> list[str]:
    """Names of the policy packs bundled with Bastion (usable as ``pack:NAME``)."""
    folder = resources.files("bastion.policies") / "packs"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_policy(source: str | Path) -> Policy:
    """Load and validate a policy file, or a bundled pack given as ``pack:NAME``.

    Raises :class:`~bastion.errors.PolicyError` naming the file, the line, the key path and what is wrong.
    """
    text, origin = _read(source)
    return load_policy_text(text, source=origin)


def load_policy_text(text: str, *, source: str = "<policy>") -> Policy:
    """Validate policy YAML given as text; ``source`` names it in error messages."""
    try:
        data, node = load_yaml(text)
    except YamlProblem as exc:
        raise PolicyError(
            f"{source}:{exc.line}: not valid YAML: {exc.problem}",
            hint="fix the YAML syntax (indentation, quotes, colons)",
        ) from None
    if data is None:
        raise PolicyError(f"{source}:1: the policy is empty", hint="a policy needs at least a 'name' and 'detectors'")
    return _validate(data, node, source)


def policy_from_mapping(data: Mapping[str, Any], *, source: str = "<policy>") -> Policy:
    """Validate a policy given as an already-parsed mapping (no line numbers in errors)."""
    return _validate(dict(data), None, source)


def _read(source: str | Path) -> tuple[str, str]:
    if isinstance(source, str) and source.startswith(PACK_PREFIX):
        name = source[len(PACK_PREFIX) :]
        packs = list_packs()
        if name not in packs:
            raise PolicyError(f"unknown policy pack {name!r}", hint=f"bundled packs: {', '.join(packs)}")
        res = resources.files("bastion.policies") / "packs" / f"{name}.yaml"
        return res.read_text(encoding="utf-8"), source
    path = Path(source)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PolicyError(
            f"{path}: policy file not found",
            hint=f"check the path, or use a bundled pack: pack:{', pack:'.join(list_packs())}",
        ) from None
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file: {exc.strerror}") from None
    try:
        return raw.decode("utf-8"), str(path)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise PolicyError(f"{path}:{line}: policy file is not valid UTF-8") from None


def _validate(data: Any, node: yaml.Node | None, source: str) -> Policy:
    if not isinstance(data, dict):
        raise PolicyError(f"{source}:1: the policy must be a mapping (key: value), got {_kind(data)}")
    problems: list[tuple[Loc, str]] = []
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            problems.append((_clean_loc(err["loc"], data), _message(err)))
        raise _error(problems, node, source) from None
    problems.extend(_semantic_problems(policy))
    if problems:
        raise _error(problems, node, source)
    policy._source = source
    return policy


def _semantic_problems(policy: Policy) -> list[tuple[Loc, str]]:
    problems: list[tuple[Loc, str]] = []
    known = policy.classifications
    for i, name in enumerate(known):
        if name in known[:i]:
            problems.append((("classifications", i), f"duplicate classification {name!r}"))
    if policy.default_classification not in known:
        problems.append((("default_classification",), _unknown_class(policy.default_classification, known)))
    problems += _duplicates("detectors", [d.id for d in policy.detectors], "detector id")
    problems += _duplicates("upstreams", [u.id for u in policy.upstreams], "upstream id")
    problems += _duplicates("residency", [r.id for r in policy.residency], "residency rule id")
    for i, det in enumerate(policy.detectors):
        if det.classification not in known:
            problems.append((("detectors", i, "classification"), _unknown_class(det.classification, known)))
        for j, name in enumerate(getattr(det, "classifications", ())):
            if name != "*" and name not in known:
                problems.append((("detectors", i, "classifications", j), _unknown_class(name, known)))
    for i, rule in enumerate(policy.residency):
        for j, name in enumerate(rule.classifications):
            if name not in known:
                problems.append((("residency", i, "classifications", j), _unknown_class(name, known)))
    problems += _duplicates("classify", [r.id for r in policy.classify], "classify rule id")
    for i, crule in enumerate(policy.classify):
        if crule.classification not in known:
            problems.append((("classify", i, "classification"), _unknown_class(crule.classification, known)))
    return problems


def _duplicates(key: str, ids: list[str], what: str) -> list[tuple[Loc, str]]:
    seen: dict[str, int] = {}
    out: list[tuple[Loc, str]] = []
    for i, ident in enumerate(ids):
        if ident in seen:
            out.append(((key, i, "id"), f"duplicate {what} {ident!r} (first used at {key}[{seen[ident]}])"))
        else:
            seen[ident] = i
    return out


def _unknown_class(name: str, known: Iterable[str]) -> str:
    return f"unknown classification {name!r}; declared classifications: {', '.join(known)}"


def _clean_loc(loc: tuple[int | str, ...], data: Any) -> Loc:
    """Drop pydantic's discriminator tags (``detectors.2.email.action`` -> ``detectors[2].action``)."""
    out: list[str | int] = []
    cursor: Any = data
    for part in loc:
        if isinstance(cursor, dict) and isinstance(part, str) and part not in cursor and cursor.get("type") == part:
            continue
        out.append(part)
        if isinstance(cursor, dict) and isinstance(part, str):
            cursor = cursor.get(part)
        elif isinstance(cursor, list) and isinstance(part, int) and 0 <= part < len(cursor):
            cursor = cursor[part]
        else:
            cursor = None
    return tuple(out)


def _message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key (check its spelling)"
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_invalid":
        return f"unknown detector type {ctx.get('tag')!r}; expected one of: {', '.join(DETECTOR_TYPES)}"
    if kind == "union_tag_not_found":
        return f"detector needs a 'type'; one of: {', '.join(DETECTOR_TYPES)}"
    if kind == "string_pattern_mismatch":
        field = next((p for p in reversed(err["loc"]) if isinstance(p, str)), "")
        advice = _PATTERN_ADVICE.get(field, f"the required form is {ctx.get('pattern')}")
        return f"{_short(err.get('input'))} is not allowed here: {advice}"
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    got = err.get("input")
    if not isinstance(got, (dict, list)):
        msg += f" (got {_short(got)})"
    return msg


_PATTERN_ADVICE = {
    "jurisdiction": "use an upper-case code such as EU, US, CH",
    "jurisdictions": "use upper-case codes such as EU, US, CH, or '*' for anywhere",
    "id": "ids start with a letter or digit and use only letters, digits and _ . : - (at most 64)",
    "entity": "entity types are upper case, e.g. PROJECT_CODE",
    "classifications": "classification names are lower case, e.g. personal",
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def format_loc(loc: Loc) -> str:
    """``('detectors', 2, 'action')`` -> ``detectors[2].action``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def line_of(node: yaml.Node | None, loc: Loc) -> int | None:
    if node is None:
        return None
    line = node.start_mark.line + 1
    cursor: yaml.Node | None = node
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(cursor, yaml.MappingNode):
            for key_node, value_node in cursor.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    nxt = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif isinstance(cursor, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(cursor.value):
            nxt = cursor.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        cursor = nxt
        if isinstance(nxt, yaml.ScalarNode):
            line = nxt.start_mark.line + 1
    return line


def _error(problems: list[tuple[Loc, str]], node: yaml.Node | None, source: str) -> PolicyError:
    lines = []
    for loc, message in problems:
        line = line_of(node, loc)
        where = f"{source}:{line}" if line is not None else source
        lines.append(f"{where}: {format_loc(loc)}: {message}")
    if len(lines) == 1:
        return PolicyError(lines[0], hint="fix the policy file and run 'bastion policy check' again")
    head = f"{source}: {len(lines)} problems in the policy"
    return PolicyError(
        head + "\n  " + "\n  ".join(lines), hint="fix the policy file and run 'bastion policy check' again"
    )
