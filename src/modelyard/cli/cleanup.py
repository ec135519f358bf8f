"""``cleanup``: archive or delete the versions beyond the newest N."""

from __future__ import annotations

from typing import Any

import click

from modelyard.cli.render import _fmt
from modelyard.cli.shell import (
    State,
    YardError_,
    _console,
    _escape,
    command_options,
    emit,
    main,
)


@main.command("cleanup")
@click.argument("name", required=False)
@click.option("--keep", type=int, default=None,
              help="How many of the newest versions to keep (default: max_versions).")
@click.option("--delete", is_flag=True, help="Delete versions (and their files) instead of "
              "archiving them.")
@click.option("--yes", is_flag=True, help="Apply the plan (without it nothing changes).")
@click.option("--debris", is_flag=True, help="Remove what processes that died left behind "
              "(every model's, or NAME's): pending versions, runs, logged models and their "
              "files, vault objects no manifest names; record a missing audit event.")
@click.option("--dry-run", is_flag=True, help="With --debris: show what would be removed.")
@click.option("--grace", type=click.FloatRange(0, 10 * 365 * 86400), default=None,
              metavar="SECONDS", help="With --debris: leave what is younger (default 3600; a "
              "registration whose process still runs on this machine is never removed).")
@command_options
def cleanup_cmd(state: State, name: str | None, keep: int | None, delete: bool, yes: bool,
                debris: bool, dry_run: bool, grace: float | None) -> None:
    """Archive or delete versions beyond the newest N; never touches an alias holder.

    Shows the plan and changes nothing unless --yes is given. With --debris, removes what
    a registration, import or adopt that was killed left behind (audited), and with
    --dry-run only lists it.

    \b
    Examples:
      modelyard cleanup churn --keep 10
      modelyard cleanup churn --keep 10 --yes
      modelyard cleanup churn --keep 10 --delete --yes
      modelyard cleanup --debris --dry-run
      modelyard cleanup --debris
    """
    if debris:
        if keep is not None or delete or yes:
            raise YardError_("--debris takes no --keep, --delete or --yes")
        report = state.yard.protection.cleanup_debris([name] if name else None, grace=grace,
                                                      dry_run=dry_run)
        emit(state, report, render_debris)
        if report.failed:
            raise SystemExit(1)
        return
    if dry_run or grace is not None:
        raise YardError_("--dry-run and --grace go with --debris")
    if not name:
        raise YardError_("give the model NAME to clean up, or --debris")
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


def render_debris(data: dict[str, Any]) -> None:
    console = _console()
    for item in data["items"]:
        if data["applied"]:
            console.print(f"{_escape(item['done'] or 'left')}: {_escape(item['detail'])}")
        else:
            console.print(f"would clean: {_escape(item['detail'])}")
    for running in data["in_flight"]:
        console.print(f"kept (in flight): {_escape(running)}")
    for failure in data["failed"]:
        console.print(f"[red]not cleaned[/red]: {_escape(failure)}")
    if not data["items"]:
        console.print("no debris")
    elif not data["applied"]:
        console.print("Nothing changed (--dry-run).")
