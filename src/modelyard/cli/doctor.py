"""``doctor``: check the tracking server, artifact store, vault and credentials."""

from __future__ import annotations

import sys
from typing import Any

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

    emit(state, report, render)
    if not report["ok"]:
        broken = ", ".join(c["component"] for c in report["checks"] if not c["ok"])
        if not state.json:
            _console(stderr=True).print(f"[red]Broken:[/red] {broken}")
        sys.exit(1)
