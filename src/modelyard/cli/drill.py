"""The ``drill`` group: ``list`` shows the scenarios; ``run`` breaks a throwaway copy on purpose
(one scenario, or all) and times how it is detected, recovered and verified."""

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
from modelyard.errors import InvalidInput


@main.group("drill")
def drill_group() -> None:
    """Break a throwaway copy on purpose; watch modelyard detect, recover and verify.

    \b
    Examples:
      modelyard drill list
      modelyard drill run model-corruption
      modelyard drill run pipeline-failure --stage prepare
      modelyard drill run --all --model churn --json
    """


@drill_group.command("list")
@command_options
def drill_list(state: State) -> None:
    """The drill scenarios."""
    scenarios = state.yard.incidents.scenarios()

    def render(rows: Any) -> None:
        from rich.table import Table

        table = Table("scenario", "kind", "what is broken")
        for row in rows:
            table.add_row(row["name"], row["kind"], _escape(row["description"]))
        _console().print(table)

    emit(state, scenarios, render)


@drill_group.command("run")
@click.argument("scenario", required=False)
@click.option("--all", "run_all", is_flag=True,
              help="Run every scenario, each from the same sandbox state.")
@click.option("--model", default=None, help="Copy this real model into the sandbox.")
@click.option("--stage", type=click.Choice(["prepare", "train", "evaluate"]), default=None,
              help="The DVC stage pipeline-failure breaks (default: train).")
@click.option("--live", is_flag=True, help="Run against the real registry (needs --yes).")
@click.option("--yes", is_flag=True, help="Confirm --live.")
@command_options
def drill_run(state: State, scenario: str | None, run_all: bool, model: str | None,
              stage: str | None, live: bool, yes: bool) -> None:
    """Run one drill (or --all): inject -> detect -> recover -> verify, each timed.

    Sandbox by default: nothing real is touched; the drill is recorded in the audit trail
    and in the `modelyard-drills` MLflow experiment. Exit code 1 when a drill failed.
    """
    if bool(scenario) == run_all:
        raise InvalidInput("give one SCENARIO or --all")
    if live and not yes:
        raise InvalidInput("--live breaks the real registry on purpose: add --yes")
    yard = state.yard
    console = _console(stderr=True)
    if run_all:
        def progress(report: Any) -> None:
            if not state.json:
                mark = "[green]ok[/green]" if report.ok else "[red]FAILED[/red]"
                console.print(f"{report.scenario:>18} {mark} {report.mttr:.2f} s")

        reports = yard.incidents.drill_all(model=model, live=live, progress=progress)
    else:
        reports = [yard.incidents.drill(str(scenario), model=model, live=live, stage=stage)]
    emit(state, reports, _render_drills)
    if not all(r.ok for r in reports):
        sys.exit(1)


def _render_drills(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="Drills (seconds)")
    table.add_column("scenario", no_wrap=True)
    for header in ("detected by", "layer"):
        table.add_column(header)
    table.add_column("ok", no_wrap=True)
    for header in ("detect", "recover", "verify", "MTTR"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        phases = row["phases"]
        table.add_row(row["scenario"],
                      _escape(", ".join(row["detected_by"]) or "NOT DETECTED"),
                      _escape(f"{row['layer']} {row['via']}" if row["layer"] else "none"),
                      "[green]yes[/green]" if row["ok"] else "[red]no[/red]",
                      f"{phases.get('detect', 0):.2f}", f"{phases.get('recover', 0):.2f}",
                      f"{phases.get('verify', 0):.2f}", f"{row['mttr']:.2f}")
    console = _console()
    console.print(table)
    for row in rows:
        console.print(f"[bold]{row['scenario']}[/bold] injected: {_escape(row['injected'])}")
        for note in row["notes"]:
            console.print(f"  [yellow]note:[/yellow] {_escape(note)}")
