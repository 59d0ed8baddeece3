"""Reading configuration YAML (policies, deploy policies) so that every failure has a line number.

PyYAML's ``safe_load`` lets its constructors' own exceptions escape for some well-formed but
nonsensical documents (``!!int zz`` -> ValueError, ``name: !!float`` -> IndexError,
``!!timestamp nope`` -> AttributeError, a few hundred nested ``[`` -> RecursionError), and its reader
errors for control characters carry a byte position, not a line. :func:`load_yaml` turns each of
them into a :class:`YamlProblem` with the 1-based line, and refuses what a configuration file never
needs: nesting deeper than :data:`MAX_DEPTH`, aliases that expand to more than :data:`MAX_NODES`
nodes ("billion laughs"), and a key given twice in one mapping (YAML says keys are unique; PyYAML
silently keeps the last copy, so a reviewer reading the first would be misled).
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64
MAX_NODES = 100_000


class YamlProblem(Exception):
    """The text is not a usable YAML document; ``line`` is 1-based, ``problem`` says what is wrong."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}")
        self.line = line
        self.problem = problem


class _Loader(yaml.SafeLoader):
    """SafeLoader with a depth bound, duplicate-key refusal and located constructor errors."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise YamlProblem(mark.line + 1, f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, YamlProblem):
            raise
        except RecursionError:
            raise YamlProblem(node.start_mark.line + 1, "nested too deeply") from None
        except Exception as exc:  # a constructor's own ValueError/IndexError/AttributeError...
            tag = node.tag.rsplit(":", 1)[-1]
            raise YamlProblem(
                node.start_mark.line + 1,
                f"the value cannot be read as {tag!r} ({type(exc).__name__}); remove the tag or fix the value",
            ) from None

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value if isinstance(node, yaml.MappingNode) else ():  # "!!set x": super() says
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise YamlProblem(
                        key_node.start_mark.line + 1, f"the key {_short(key_node.value)} appears twice in one mapping"
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def _short(text: str) -> str:
    return repr(text) if len(text) <= 40 and text.isprintable() else "(a long or unprintable key)"


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes the document has once aliases are expanded (iterative: the depth is bounded already)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a cycle (a recursive alias) counts once, then again when reached from elsewhere
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[key] = total = min(total, MAX_NODES + 1)
    return total


def load_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """Parse one YAML document: (data, root node for line lookups); ``(None, None)`` for an empty one.

    Raises :class:`YamlProblem` for anything that is not a plain, located-error-free document.
    """
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # the reader checks for control characters here already
        node = loader.get_single_node()
        if node is None:
            return None, None
        if _expanded_size(node, {}) > MAX_NODES:
            raise YamlProblem(
                node.start_mark.line + 1, f"the document expands (through aliases) to more than {MAX_NODES} values"
            )
        return loader.construct_document(node), node
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1 if isinstance(exc.position, int) else 1
        char = exc.character
        what = f"#x{char:04x}" if isinstance(char, int) else f"#x{ord(char):04x}" if isinstance(char, str) else "?"
        raise YamlProblem(line, f"control character {what} is not allowed in YAML (remove it)") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = str(exc.problem or exc.context or "not valid YAML")
        if exc.context and problem.startswith("but "):  # "expected a single document…", "but found another…"
            problem = f"{exc.context}, {problem}"
        raise YamlProblem(line, problem) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, str(exc) or "not valid YAML") from None
    except RecursionError:  # pragma: no cover - the depth bound comes first
        raise YamlProblem(1, "nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
