"""``doctor``: check the tracking server, artifact store, vault and credentials; ``mlflow-ui``:
MLflow's own UI on the project's registry."""

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


@main.command("doctor")
@command_options
def doctor_cmd(state: State) -> None:
    """Check the tracking server, artifact store, vault and credentials.

    \b
    Examples:
      modelyard doctor
      modelyard doctor --json
    """
    report = state.yard.doctor()

    def render(data: dict[str, Any]) -> None:
        from rich.table import Table

        console = _console()
        console.print(f"mode: [bold]{data['mode']}[/bold]   user: {data['user']}")
        console.print(f"tracking: {data['tracking_uri']}")
        console.print(f"artifacts: {data['artifact_location']}")
        console.print(f"vault: {data['vault']}")
        table = Table("component", "target", "status", "detail")
        for check in data["checks"]:
            status = "[green]ok[/green]" if check["ok"] else "[red]BROKEN[/red]"
            table.add_row(check["component"], check["target"], status, _escape(check["detail"]))
        console.print(table)
        present = [k for k, v in data["credentials"].items() if v == "set"]
        console.print("credentials set: " + (", ".join(present) if present else "none"))
        console.print(f"MLflow UI: {_escape(data['ui'])}")

    emit(state, report, render)
    if not report["ok"]:
        broken = ", ".join(c["component"] for c in report["checks"] if not c["ok"])
        if not state.json:
            _console(stderr=True).print(f"[red]Broken:[/red] {broken}")
        sys.exit(1)


@main.command("mlflow-ui")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--print", "print_only", is_flag=True, help="Print the command; start nothing.")
@command_options
def mlflow_ui_cmd(state: State, host: str, port: int, print_only: bool) -> None:
    """Open MLflow's UI on this project's registry (the embedded SQLite database and artifact
    folder); on a tracking server, print its address (it serves the UI).

    \b
    Examples:
      modelyard mlflow-ui               # then browse http://127.0.0.1:5000
      modelyard mlflow-ui --port 5001 --print
    """
    import os
    import shlex

    from modelyard.incidents.doctor import mlflow_ui_command, ui_hint

    settings = state.yard.settings
    command = mlflow_ui_command(settings, host=host, port=port)
    if command is None or print_only:
        shown = ui_hint(settings) if command is None else shlex.join(command)
        emit(state, {"command": command, "ui": shown}, lambda _: click.echo(shown))
        return
    _console(stderr=True).print(f"MLflow UI on http://{_escape(host)}:{port} (Ctrl-C stops it)")
    sys.stdout.flush()
    sys.stderr.flush()
    # The UI replaces this process, so Ctrl-C and a SIGTERM reach MLflow's server itself (a
    # child would outlive a parent that was told to stop). MLflow's job runner is for its AI
    # features, not for looking at a registry: off, it starts in half the time.
    os.execve(command[0], command, {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})
