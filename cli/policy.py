"""``bastion policy``: check a policy file and run test cases against it."""

from __future__ import annotations

import sys
from typing import Any

import click

from bastion.policies import PolicyEngine, list_packs, load_policy
from bastion.policies.cases import load_cases, run_case
from bastion.policies.model import Policy


@click.group()
def policy() -> None:
    """Check and test gateway/scan policy files (a path, or pack:NAME for a bundled pack)."""


def _options(spec: Any) -> str:
    skip = {"id", "type", "action", "classification", "enabled", "placeholder"}
    parts = []
    for key, value in spec.model_dump().items():
        if key in skip or value is None:
            continue
        if key == "pattern":
            parts.append(f"pattern={value!r}")
        elif key == "keywords":
            parts.append(f"keywords={len(value)}")
        elif isinstance(value, list):
            parts.append(f"{key}={','.join(str(v) for v in value)}")
        else:
            parts.append(f"{key}={value}")
    if spec.placeholder is not None:
        parts.append(f"placeholder={spec.placeholder!r}")
    if not spec.enabled:
        parts.append("DISABLED")
    return " ".join(parts)


def _print_summary(pol: Policy) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    console.print(f"[bold]policy[/bold] {pol.name} ({pol.source}): OK")
    if pol.description:
        console.print(pol.description)
    console.print(
        f"classifications (least to most sensitive): {', '.join(pol.classifications)}; "
        f"default: {pol.default_classification}"
    )
    table = Table(title="detectors", title_justify="left")
    for col in ("id", "type", "action", "classification", "options"):
        table.add_column(col)
    for d in pol.detectors:
        table.add_row(d.id, d.type, d.action, d.classification, _options(d))
    console.print(table)
    if not pol.detectors:
        console.print("[yellow]warning:[/yellow] no detectors: every record is allowed unchanged")
    ups = Table(title="upstreams", title_justify="left")
    ups.add_column("id")
    ups.add_column("jurisdiction")
    for u in pol.upstreams:
        ups.add_row(u.id, u.jurisdiction)
    if pol.upstreams:
        console.print(ups)
    res = Table(title="residency", title_justify="left")
    for col in ("rule", "classifications", "may go to"):
        res.add_column(col)
    for r in pol.residency:
        res.add_row(r.id, ", ".join(r.classifications), ", ".join(r.jurisdictions))
    if pol.residency:
        console.print(res)
    uncovered = [c for c in pol.classifications if not any(c in r.classifications for r in pol.residency)]
    if uncovered:
        console.print(f"note: no residency rule covers {', '.join(uncovered)}: such data may go nowhere (fail closed)")


@policy.command("check")
@click.argument("source")
def check(source: str) -> None:
    """Validate a policy and print its detectors, actions and residency rules (exit 2 if invalid)."""
    pol = load_policy(source)
    _print_summary(pol)


@policy.command("test")
@click.argument("source")
@click.argument("cases_file", metavar="CASES", type=click.Path(dir_okay=False, path_type=str))
def test(source: str, cases_file: str) -> None:
    """Run the cases in CASES (YAML or JSONL) against the policy; exit 1 if any case fails."""
    pol = load_policy(source)
    cases = load_cases(cases_file)
    engine = PolicyEngine(pol)
    failed = 0
    for case, line in cases:
        result = run_case(engine, case, line)
        where = f" ({cases_file}:{line})" if line else ""
        if result.passed:
            click.echo(f"PASS  {result.name}")
        else:
            failed += 1
            click.echo(f"FAIL  {result.name}{where}")
            for problem in result.problems:
                click.echo(f"      - {problem}")
    click.echo(f"{len(cases) - failed} passed, {failed} failed")
    if failed:
        sys.exit(1)


@policy.command("packs")
def packs() -> None:
    """List the bundled policy packs (use them as pack:NAME)."""
    for name in list_packs():
        pol = load_policy(f"pack:{name}")
        click.echo(f"pack:{name}  {pol.description}")
