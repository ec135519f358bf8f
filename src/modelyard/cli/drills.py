"""Commands for incidents: drill, recover, health, reproduce."""

from __future__ import annotations

import sys
from pathlib import Path
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
from modelyard.errors import InvalidInput

_STYLE = {"ok": "green", "warn": "yellow", "degraded": "yellow", "critical": "red",
          "healthy": "green"}


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
@click.option("--all", "run_all", is_flag=True, help="Run every scenario (one sandbox).")
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


@main.command("health")
@click.option("--prometheus", "prometheus", is_flag=False, flag_value="-", default=None,
              metavar="[PATH]", help="Write node-exporter textfile format (to PATH or stdout).")
@click.option("--notify", is_flag=True,
              help="Post a signed webhook when the status changes (and on recovery).")
@command_options
def health_cmd(state: State, prometheus: str | None, notify: bool) -> None:
    """Registry, stores, stage holders, backups, drills, audit chains, serving: one status.

    Exit code 0 healthy, 1 degraded, 2 critical.

    \b
    Examples:
      modelyard health
      modelyard health --prometheus /var/lib/node_exporter/modelyard.prom
      modelyard health --notify --json
    """
    report = state.yard.incidents.health(notify=notify)
    if prometheus == "-":
        click.echo(report.to_prometheus(), nl=False)
    else:
        if prometheus:
            target = Path(prometheus)
            partial = target.with_name(f".{target.name}.tmp")
            partial.write_text(report.to_prometheus())
            partial.replace(target)  # node-exporter never reads half a file

        def render(data: dict[str, Any]) -> None:
            from rich.table import Table

            table = Table("check", "target", "level", "detail", "ms",
                          title=f"health: [{_STYLE[data['status']]}]{data['status']}"
                                f"[/{_STYLE[data['status']]}]")
            for c in data["checks"]:
                style = _STYLE.get(c["level"], "white")
                ms = f"{c['seconds'] * 1000:.0f}" if c["seconds"] is not None else ""
                table.add_row(c["check"], _escape(c["target"]),
                              f"[{style}]{c['level']}[/{style}]", _escape(c["detail"]), ms)
            _console().print(table)

        emit(state, report, render)
    sys.exit(report.exit_code)


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
