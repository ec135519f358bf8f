"""Drawing helpers more than one command module uses: version labels, the unaudited mark, the
progress bar, and the integrity report that ``verify --all`` and ``repair`` print.

It imports only ``shell``: never a command module."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from modelyard.cli.shell import State, _console, _escape


def _fmt(state: State, semver: str | None, version: int | None) -> str:
    if semver:
        return f"{state.yard.settings.format_version(semver)} (#{version})"
    return f"#{version}" if version is not None else "-"


# -- progress and integrity (backup, restore, verify --all, repair) ----------------------------
INTEGRITY_EXIT = 5  # IntegrityError's exit code: something is missing or differs


@contextlib.contextmanager
def progress_bar(state: State, description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A rich progress bar fed ``(done, total)`` bytes; None with --json (nothing drawn)."""
    if state.json:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=_console(stderr=True),
                  transient=True) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def render_integrity(state: State, data: dict[str, Any]) -> None:
    """verify --all: one line per sound version, a table of every problem."""
    from rich.table import Table

    console = _console()
    bad = [v for v in data["versions"] if not v["ok"]]
    for version in data["versions"]:
        if version["ok"]:
            console.print(f"[green]ok[/green] {_escape(version['name'])} "
                          f"{_fmt(state, version['semver'], version['version'])}: "
                          f"{version['files']} files in {', '.join(version['layers'])}")
    if bad:
        table = Table("model", "version", "file", "layer", "problem", "detail",
                      title="integrity problems")
        for version in bad:
            for problem in version["problems"]:
                table.add_row(_escape(version["name"]),
                              _fmt(state, version["semver"], version["version"]),
                              _escape(problem["path"]), problem["layer"],
                              f"[red]{problem['problem']}[/red]", _escape(problem["detail"]))
        console.print(table)
    for skipped in data.get("skipped") or []:
        console.print(f"[yellow]skipped[/yellow] {_escape(skipped)}: no manifest (adopt it)")
    unaudited = data.get("unaudited") or []
    for holder in unaudited:
        console.print(unaudited_mark(f"{_escape(holder['name'])}: {_escape(holder['detail'])}",
                                     True))
    debris = data.get("debris") or []
    for item in debris:
        console.print(f"[yellow]debris[/yellow] {_escape(item['line'])}")
    # The verdict names every reason the exit code is not 0: a report with no damaged file
    # but an unaudited stage holder is not "0 version(s) damaged" and nothing else.
    wrong = []
    if bad:
        wrong.append(f"[red]{len(bad)} version(s) damaged[/red]: `modelyard repair NAME@REF` "
                     "or `modelyard repair --all`")
    if unaudited:
        models = sorted({holder["name"] for holder in unaudited})
        which = _escape(models[0]) if len(models) == 1 else "NAME"
        if all("the move was interrupted" in h["detail"] for h in unaudited):
            wrong.append(f"[red]{len(unaudited)} stage holder(s) behind an interrupted "
                         f"move[/red]: `modelyard recover {which}` finishes it")
        else:
            wrong.append(f"[red]{len(unaudited)} stage holder(s) no audit event "
                         f"explains[/red]: `modelyard recover {which}` puts the audited "
                         "holder back")
    if debris:
        wrong.append(f"[red]{len(debris)} piece(s) of debris[/red] left by processes that "
                     "died: `modelyard cleanup --debris`")
    if not data["ok"] and not wrong:  # pragma: no cover - every reason for not ok is above
        wrong.append("[red]not sound[/red]")
    verdict = "[green]all sound[/green]" if data["ok"] else "; ".join(wrong)
    console.print(f"{len(data['versions'])} version(s), {data['bytes_hashed']} bytes hashed in "
                  f"{data['seconds']} s: {verdict}")


def unaudited_mark(text: str, moved: bool, *, prefix: str = "") -> str:
    """A stage holder that no audit event explains, marked for the eye (rich markup)."""
    return f"[yellow]\u26a0 {prefix}{text}[/yellow]" if moved else text
