"""``backup`` and ``restore``: versions copied into the backup store, and brought back from it
into the registry, with one progress bar for both."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click

from modelyard.cli.render import progress_bar
from modelyard.cli.shell import (
    State,
    YardError_,
    _console,
    _escape,
    command_options,
    emit,
    fail,
    main,
)


@contextlib.contextmanager
def _bar(state: State, verb: str) -> Iterator[Callable[[str, int], None] | None]:
    """The shared progress bar, fed by backup and restore: ``("total", n)`` / ``("bytes", n)``."""
    with progress_bar(state, verb) as update:
        if update is None:
            yield None
            return
        moved = {"total": 0, "bytes": 0}

        def report(kind: str, amount: int) -> None:
            moved["total" if kind == "total" else "bytes"] += amount
            update(moved["bytes"], moved["total"])

        yield report


def _size(amount: int) -> str:
    value = float(amount)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{amount} B"  # pragma: no cover


@main.command("backup")
@click.argument("targets", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every version of every model.")
@command_options
def backup_cmd(state: State, targets: tuple[str, ...], every: bool) -> None:
    """Copy versions into the backup store (only files it lacks are sent).

    NAME backs up every version of a model, NAME@REF one version.

    \b
    Examples:
      modelyard backup churn@production
      modelyard backup --all
    """
    from modelyard.core.refs import split_target

    if not targets and not every:
        raise YardError_("name what to back up (NAME or NAME@REF), or pass --all")
    pairs: list[tuple[str, str | int | None]] = []
    for target in targets:
        name, ref = split_target(target)
        pairs.append((name, ref or None))
    yard = state.yard
    with _bar(state, "backup") as progress:
        report = yard.protection.backup(pairs, all=every, progress=progress)

    def render(data: dict[str, Any]) -> None:
        from rich.table import Table

        console = _console()
        fmt = yard.settings.format_version
        table = Table("model", "version", "MLflow #", "files sent", "sent", "already there",
                      title=f"backup to {data['store']}")
        for row in data["versions"]:
            table.add_row(row["name"], fmt(row["semver"]) if row["semver"] else "",
                          str(row["version"]), f"{row['files_sent']}/{row['files']}",
                          _size(row["bytes_sent"]), str(row["files_skipped"]))
        if data["versions"]:
            console.print(table)
        console.print(f"{len(data['versions'])} version(s) complete, "
                      f"{_size(data['bytes_sent'])} sent")

    emit(state, report, render)
    if report.stopped is not None:
        if state.json:
            raise SystemExit(7)
        # A store failed as a whole: one line naming it, and what was and was not backed up.
        fail(_escape(f"backup stopped: {report.stopped}; {len(report.versions)} version(s) "
                     f"backed up, {len(report.failed)} not"), 7)
    if not report.ok:
        first = report.failed[0]
        more = f" (and {len(report.failed) - 1} more)" if len(report.failed) > 1 else ""
        if state.json:
            raise SystemExit(7)
        fail(_escape(f"backup of {first['name']} #{first['version']} failed: "
                     f"{first['error']}{more}"), 7)


@main.command("restore")
@click.argument("target", required=False)
@click.option("--all", "every", is_flag=True,
              help="Every backed-up model (into an empty registry, after losing its database).")
@click.option("--aliases", is_flag=True, help="Also take back the aliases and stages held.")
@command_options
def restore_cmd(state: State, target: str | None, every: bool, aliases: bool) -> None:
    """Bring back a deleted version (NAME@REF), every deleted version of a model (NAME), or
    with --all every backed-up model, from the backup store.

    \b
    Examples:
      modelyard restore churn@v1.2.0 --aliases
      modelyard restore --all
    """
    from modelyard.core.refs import split_target

    if every and target:
        raise YardError_("give NAME[@REF] or --all, not both")
    if not every and not target:
        raise YardError_("name what to restore (NAME or NAME@REF), or pass --all")
    yard = state.yard
    with _bar(state, "restore") as progress:
        if every:
            report = yard.protection.restore_all(aliases=True, progress=progress)
        else:
            name, ref = split_target(target or "")
            report = yard.protection.restore(name, ref or None, aliases=aliases, progress=progress)

    def render(data: dict[str, Any]) -> None:
        console = _console()
        fmt = yard.settings.format_version
        for row in data["restored"]:
            console.print(f"[green]restored[/green] {_escape(row['name'])} "
                          f"{fmt(row['semver'])} as MLflow version {row['version']}")
        for row in data["aliases"]:
            console.print(f"  {_escape(row['name'])}@{_escape(row['alias'])} -> "
                          f"{fmt(row['semver'])}")
        for line in data["skipped"]:
            console.print(f"[dim]skipped: {_escape(line)}[/dim]")

    emit(state, report, render)
    if not report.ok:
        first = report.failed[0]
        if state.json:
            raise SystemExit(7)
        fail(_escape(f"restore of {first.get('name')} failed: {first['error']}"), 7)
