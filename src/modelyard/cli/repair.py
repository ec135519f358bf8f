"""``repair``: put back missing or corrupt files from the first layer (cache, vault, backup
store) that holds a good copy, then verify again."""

from __future__ import annotations

from typing import Any

import click

from modelyard.cli.render import INTEGRITY_EXIT, progress_bar, render_integrity
from modelyard.cli.shell import (
    State,
    YardError_,
    _console,
    _escape,
    command_options,
    emit,
    main,
)


@main.command("repair")
@click.argument("target", required=False)
@click.option("--all", "every", is_flag=True, help="Every version of every model.")
@command_options
def repair_cmd(state: State, target: str | None, every: bool) -> None:
    """Put back missing or corrupt files from the first layer with a good copy.

    Sources, in order: the local cache, the vault, the backup store; every copy's hash is
    checked before it is written, and everything is verified again at the end (exit code 5
    if something could not be repaired). A file of the artifact store that the manifest does
    not list is taken out and kept in the vault (quarantine/NAME/VERSION/STAMP/PATH).

    \b
    Examples:
      modelyard repair churn@production
      modelyard repair churn            # every version of churn
      modelyard repair --all
    """
    from modelyard.core.refs import split_target

    if not every and not target:
        raise YardError_("give NAME[@REF] to repair, or --all")
    name, ref = split_target(target) if target else (None, None)
    with progress_bar(state, "checking") as progress:
        report = state.yard.protection.repair(name, ref, all=every, progress=progress)
    emit_repair(state, report)
    if not report.ok:
        raise SystemExit(INTEGRITY_EXIT)


def emit_repair(state: State, report: Any) -> None:
    def render(data: dict[str, Any]) -> None:
        console = _console()
        for item in data["files"]:
            if item.get("action") == "quarantined":
                console.print(f"[yellow]quarantined[/yellow] {_escape(item['name'])} "
                              f"#{item['version']} {_escape(item['path'])}: not in the "
                              f"manifest; taken out of the {item['layer']} store, kept in "
                              f"the vault at {_escape(item['kept_at'])}")
                continue
            console.print(f"[green]repaired[/green] {_escape(item['name'])} "
                          f"#{item['version']} {_escape(item['path'])} in {item['layer']} "
                          f"(from the {item['served_by']})")
        for problem in data["unrepairable"]:
            console.print(f"[red]not repaired[/red] {_escape(problem['name'])} "
                          f"#{problem['version']} {_escape(problem['path'])} in "
                          f"{problem['layer']}: {problem['problem']} and no layer holds a "
                          "good copy")
        if not data["files"] and not data["unrepairable"]:
            console.print("[green]nothing to repair[/green]")
        if data["after"] and not data["verified"]:
            render_integrity(state, data["after"])
        console.print("verified: " + ("[green]yes[/green]" if data["verified"]
                                      else "[red]no[/red]"))

    emit(state, report, render)
