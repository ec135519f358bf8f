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
    apart = data.get("apart") or []
    for line in apart:
        console.print(f"[red]not checked[/red] {_escape(line)}")
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
    if apart:
        wrong.append(f"[red]{len(apart)} model(s) written with another vault[/red] not "
                     "checked: `modelyard doctor` names it")
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


# -- lineage (details, lineage) ------------------------------------------------------------------
def training_summary(lin: dict[str, Any]) -> str:
    """Training time and resources on one line: ``12.3 s wall (dvc_stage), 20.1 s CPU, peak
    512.0 MiB RSS; host 8 cores, 31.2 GiB`` ("-" for what was not recorded; a value that is
    not a number, as a tag written around modelyard may hold, is shown as it is)."""
    def figure(key: str, template: str, scale: float = 1.0) -> str | None:
        text = str(lin.get(key) or "")
        if not text:
            return None
        try:
            return template.format(float(text) / scale)
        except ValueError:
            return f"{key} {text}"

    wall = figure("duration_s", "{:.1f} s wall")
    if wall and lin.get("duration_from"):
        wall += f" ({lin['duration_from']})"
    parts = [wall, figure("cpu_s", "{:.1f} s CPU"), figure("peak_rss_mb", "peak {:.1f} MiB RSS")]
    host = [figure("host_cpus", "{:.0f} cores"), figure("host_memory_mb", "{:.1f} GiB", 1024)]
    text = ", ".join(p for p in parts if p) or "-"
    known = [h for h in host if h]
    return f"{text}; host {', '.join(known)}" if known else text


def dirty_summary(lin: dict[str, Any]) -> str:
    """``no``, ``yes: PATH, PATH`` or ``-`` (not recorded)."""
    if lin.get("git_dirty") == "true":
        paths = lin.get("dirty_paths") or []
        return "yes: " + ", ".join(paths) if paths else "yes"
    return "no" if lin.get("git_dirty") == "false" else "-"


def lineage_rows(lin: dict[str, Any]) -> list[tuple[str, str]]:
    """A version's lineage as (key, text) rows, plain text (escape before printing): code,
    data, parameters' seed, environment, who trained it where, and what training took."""
    rows = [("git commit", lin.get("git_commit") or "-"),
            ("git branch", lin.get("git_branch") or "-"),
            ("git dirty", dirty_summary(lin))]
    for ref in lin.get("data") or []:
        extra = f" (git {ref['git_commit'][:8]})" if ref.get("git_commit") else ""
        rows.append((f"data {ref['path']}", f"{ref['source']}:{ref['hash']}{extra}"))
    rows += [("seed", lin.get("seed") or "-"), ("python", lin.get("python") or "-")]
    packages = lin.get("packages") or {}
    rows.append(("packages", ", ".join(f"{k} {v}" for k, v in sorted(packages.items())) or "-"))
    rows += [("trained by", f"{lin.get('trained_by') or '-'} on {lin.get('host') or '-'}"),
             ("started", lin.get("started_at") or "-"),
             ("training", training_summary(lin))]
    if lin.get("parent_run"):
        rows.append(("parent run", lin["parent_run"]))
    return rows
