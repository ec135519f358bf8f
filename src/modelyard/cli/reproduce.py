"""``reproduce``: re-run a version's recorded commit, data and params in a clean git worktree."""

from __future__ import annotations

import sys
from typing import Any

import click

from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    _target,
    command_options,
    emit,
    main,
)


@main.command("reproduce")
@click.argument("target")
@click.option("--tolerance", default=1e-6, show_default=True,
              help="Relative and absolute tolerance for metrics and predictions.")
@command_options
def reproduce_cmd(state: State, target: str, tolerance: float) -> None:
    """Re-run a version's recorded commit, data and params in a clean git worktree.

    Registers nothing. Exit code 1 when the version does not reproduce.

    \b
    Examples:
      modelyard reproduce churn@production
      modelyard reproduce churn@v1.2.0 --json
    """
    name, ref = _target(target, "production")
    report = state.yard.incidents.reproduce(name, ref, tolerance=tolerance)

    def render(data: dict[str, Any]) -> None:
        console = _console()
        verdict = "[green]reproduces[/green]" if data["reproducible"] else \
            "[red]does NOT reproduce[/red]"
        console.print(f"{_escape(name)} v{data['semver']} at {data['commit'][:12]}: {verdict} "
                      f"({data['seconds']:.1f} s)")
        # The likely causes come first: a metric that moved says little once the code that
        # trained the version is known not to be the commit's.
        label = "likely cause" if not data["reproducible"] else "note"
        for line in data.get("causes") or []:
            console.print(f"  [yellow]{label}:[/yellow] {_escape(line)}")
        for key, m in data["metrics"].items():
            mark = "ok" if m["ok"] else "DIFFERS"
            console.print(f"  metric {key}: {m['reproduced']} (recorded {m['recorded']}) {mark}")
        for line in data["differences"]:
            console.print(f"  [red]-[/red] {_escape(line)}")
        for line in data["notes"]:
            console.print(f"  [yellow]note:[/yellow] {_escape(line)}")

    emit(state, report, render)
    if not report.reproducible:
        sys.exit(1)
