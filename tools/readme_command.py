"""Print the shell command from the README's fenced block that follows ``<!-- command: NAME -->``.

.ci/run uses it so CI runs exactly the test command that README.md gives a newcomer.
"""

from __future__ import annotations

import sys
from pathlib import Path


def command(readme: str, name: str) -> str:
    marker = f"<!-- command: {name} -->"
    _, found, rest = readme.partition(marker)
    if not found:
        raise SystemExit(f"README.md has no '{marker}' block")
    lines = rest.lstrip().splitlines()
    if not lines or not lines[0].startswith("```"):
        raise SystemExit(f"'{marker}' must be followed by a fenced code block")
    body = []
    for line in lines[1:]:
        if line.startswith("```"):
            return "\n".join(body).strip()
        body.append(line)
    raise SystemExit(f"unterminated code block after '{marker}'")


if __name__ == "__main__":
    print(command((Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8"), sys.argv[1]))
