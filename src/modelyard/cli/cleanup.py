"""``cleanup``: archive or delete the versions beyond the newest N."""

from __future__ import annotations

from typing import Any

import click

from modelyard.cli.render import _fmt
from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    command_options,
    emit,
    main,
)


@main.command("cleanup")
@click.argument("name")
@click.option("--keep", type=int, default=None,
              help="How many of the newest versions to keep (default: max_versions).")
@click.option("--delete", is_flag=True, help="Delete versions (and their files) instead of "
              "archiving them.")
@click.option("--yes", is_flag=True, help="Apply the plan (without it nothing changes).")
@command_options
def cleanup_cmd(state: State, name: str, keep: int | None, delete: bool, yes: bool) -> None:
    """Archive or delete versions beyond the newest N; never touches an alias holder.

    Shows the plan and changes nothing unless --yes is given.

    \b
    Examples:
      modelyard cleanup churn --keep 10
      modelyard cleanup churn --keep 10 --yes
      modelyard cleanup churn --keep 10 --delete --yes
    """
    result = state.yard.cleanup(name, keep, delete=delete, yes=yes)

    def render(data: dict[str, Any]) -> None:
        console = _console()
        verb = "delete" if data["delete"] else "archive"
        done = "done" if data["applied"] else "plan"
        if not data["plan"]:
            console.print(f"{_escape(name)}: nothing to {verb} (keeping the newest "
                          f"{data['keep']})")
        for row in data["plan"]:
            console.print(f"{done}: {row['action']} {_fmt(state, row['semver'], row['version'])}"
                          f" (stage {row['stage']})")
        for row in data["skipped"]:
            console.print(f"kept: {_fmt(state, row['semver'], row['version'])} "
                          f"({_escape(row['why'])})")
        if data["plan"] and not data["applied"]:
            console.print("Nothing changed: run again with --yes to apply.")

    emit(state, result, render)
