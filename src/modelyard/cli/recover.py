"""``recover``: detect what is wrong with a model and recover it through the layers, verified."""

from __future__ import annotations

import sys
from typing import Any

import click

from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    command_options,
    emit,
    main,
)


@main.command("recover")
@click.argument("name")
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@command_options
def recover_cmd(state: State, name: str, dry_run: bool) -> None:
    """Detect what is wrong with a model and recover it through the layers, verified.

    Layers, in order: L1 local cache / backup copy, L2 vault / DVC remote / backup store,
    L3 snapshot, L4 re-run through the DVC pipeline. Exit code 1 if something is left.

    \b
    Examples:
      modelyard recover churn --dry-run
      modelyard recover churn
    """
    report = state.yard.incidents.recover(name, dry_run=dry_run)

    def render(data: dict[str, Any]) -> None:
        console = _console()
        if not data["findings"]:
            console.print(f"[green]ok[/green] {_escape(name)}: every check passes")
            return
        title = "plan (dry run: nothing changed)" if data["dry_run"] else "plan"
        console.print(f"[bold]{title}[/bold]")
        for line in data["plan"]:
            console.print(f"  {_escape(line)}")
        for fix in data["fixes"]:
            for attempt in fix["attempts"]:
                mark = "[green]ok[/green]" if attempt["ok"] else "[red]failed[/red]"
                console.print(f"  {attempt['layer']} {_escape(attempt['via'])}: {mark} "
                              f"{_escape(attempt['detail'])}")
        if not data["dry_run"]:
            for line in data["verification"]:
                console.print(f"  verify: {_escape(line)}")
            verdict = "[green]recovered and verified[/green]" if data["ok"] else \
                "[red]NOT recovered[/red]"
            console.print(verdict)

    emit(state, report, render)
    if not report.ok and not dry_run:
        sys.exit(1)
