"""Commands that operate on models: load, verify, the demo."""

from __future__ import annotations

import json
from pathlib import Path

import click

from modelyard.cli.shell import (
    State,
    YardError_,
    _console,
    _escape,
    _target,
    command_options,
    emit,
    main,
)


@main.command("load")
@click.argument("target")
@click.option("--to", "dest", required=True, type=click.Path(path_type=Path),
              help="Folder to write the verified files to: new, empty, or one an earlier "
              "load wrote (anything else is refused, never deleted).")
@click.option("--no-verify", is_flag=True, help="Skip the manifest check (not recommended).")
@command_options
def load_cmd(state: State, target: str, dest: Path, no_verify: bool) -> None:
    """Download a version's files, checked against its manifest, into a folder.

    \b
    Examples:
      modelyard load churn@production --to ./serving/model
    """
    name, ref = _target(target, "production")
    mv, path = state.yard.download(name, ref, dest, verify=not no_verify)
    emit(state, {"name": mv.name, "version": mv.version, "semver": mv.semver, "path": str(path),
                 "verified": not no_verify},
         lambda _: _console().print(f"{mv.label} -> {path} (verified: {not no_verify})"))


@main.command("verify")
@click.argument("target", required=False)
@click.option("--all", "every", is_flag=True,
              help="Every version (of TARGET's model, if given) in every layer: artifact "
              "store, vault, backup store.")
@command_options
def verify_cmd(state: State, target: str | None, every: bool) -> None:
    """Check stored files against their manifests (exit code 5 if anything is wrong).

    \b
    Examples:
      modelyard verify churn@production
      modelyard verify --all
      modelyard verify --all churn --json
    """
    from modelyard.cli.render import INTEGRITY_EXIT, progress_bar, render_integrity

    if every:
        name = _target(target)[0] if target else None
        with progress_bar(state, "verifying") as progress:
            report = state.yard.protection.verify_all(name, progress=progress)
        emit(state, report, lambda r: render_integrity(state, r))
        if not report.ok:
            raise SystemExit(INTEGRITY_EXIT)
        return
    if not target:
        raise YardError_("give NAME@REF to verify, or --all")
    name, ref = _target(target)
    result = state.yard.verify(name, ref)
    emit(state, result, lambda r: _console().print(
        f"[green]ok[/green] {r['name']} v{r['semver']}: {r['files']} files, {r['bytes']} bytes "
        "match the manifest"))


@main.command("demo")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Folder to run in (new or empty; default: a new ./modelyard-demo-N).")
@click.option("--rows", default=2000, show_default=True, help="Synthetic customers at first.")
@click.option("--trees", default=60, show_default=True, help="Trees in the first forest.")
@command_options
def demo_cmd(state: State, directory: Path | None, rows: int, trees: int) -> None:
    """Run the main job end to end: DVC pipeline, semvers, gates, promotion, rollback.

    \b
    Examples:
      modelyard demo
      MLFLOW_TRACKING_URI=http://mlflow:5000 modelyard demo --dir /tmp/demo
    """
    from modelyard.cli.demo import run_demo

    if directory is None:
        index = 1
        while Path(f"modelyard-demo-{index}").exists():
            index += 1
        directory = Path(f"modelyard-demo-{index}")
    console = _console()
    steps = []
    runner = run_demo(directory, rows=rows, trees=trees)
    while True:
        if state.json:
            step = next(runner, None)
        else:
            with console.status("[bold]working...[/bold] (dvc repro trains a model: ~20 s)"):
                step = next(runner, None)
        if step is None:
            break
        steps.append({"step": step.title, "lines": step.lines, "seconds": round(step.seconds, 2),
                      "data": step.data})
        if not state.json and step.title != "summary":
            console.print(f"[bold cyan]{step.title:>20}[/bold cyan]  {_escape(step.lines[0])}"
                          if step.lines else step.title)
            for line in step.lines[1:]:
                console.print(f"{'':>20}  {_escape(line)}")
        if step.title == "summary" and not state.json:
            from rich.table import Table

            table = Table("version", "MLflow #", "bump", "accuracy", "roc_auc", "stage",
                          title=f"{step.data['model']}: demo finished in "
                          f"{step.data['seconds']} s")
            fmt = state.yard.settings.format_version
            for row in step.data["rows"]:
                table.add_row(fmt(row["semver"]), str(row["version"]), row["bump"],
                              f"{row['accuracy']:.3f}", f"{row['roc_auc']:.3f}", row["stage"])
            console.print(table)
    if state.json:
        click.echo(json.dumps(steps, indent=1, default=str))


# Commands defined in their own modules register themselves on `main`.
