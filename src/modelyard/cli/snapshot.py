"""The ``snapshot`` group: ``create``, ``list``, ``show``, ``diff`` and ``restore`` of
whole-system snapshots (every alias and stage holder, the git commit, the DVC data hashes)."""

from __future__ import annotations

import sys
from typing import Any

import click

from modelyard.cli.render import _fmt
from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    command_options,
    emit,
    fail,
    main,
)


@main.group("snapshot", invoke_without_command=True)
@click.pass_context
def snapshot_group(ctx: click.Context) -> None:
    """Whole-system snapshots: every alias and stage, the git commit, the DVC data hashes.

    \b
    Examples:
      modelyard snapshot create before-q3 -m "before the Q3 retrain"
      modelyard snapshot diff before-q3
      modelyard snapshot restore before-q3 --dry-run
      modelyard snapshot restore before-q3 --yes
    """
    if ctx.invoked_subcommand is None:
        raise click.UsageError("give a subcommand: create, list, show, diff or restore")


@snapshot_group.command("create")
@click.argument("tag")
@click.option("--model", "models", multiple=True, help="Only these models (repeatable).")
@click.option("-m", "--message", default=None, help="Why this snapshot was taken.")
@click.option("--no-data", is_flag=True, help="Do not record the git commit and DVC hashes.")
@command_options
def snapshot_create(state: State, tag: str, models: tuple[str, ...], message: str | None,
                    no_data: bool) -> None:
    """Record the state now under TAG (immutable; an existing TAG is refused)."""
    snapshot = state.yard.protection.snapshots.create(
        tag, models=list(models) or None, message=message, include_data=not no_data)
    emit(state, snapshot, lambda d: _render_snapshot(state, d, created=True))


@snapshot_group.command("list")
@command_options
def snapshot_list(state: State) -> None:
    """Every snapshot, oldest first."""

    def render(rows: list[dict[str, Any]]) -> None:
        from rich.table import Table

        table = Table("tag", "created", "by", "models", "git commit", "message")
        for row in rows:
            table.add_row(_escape(row["tag"]), row["created_at"], _escape(row["created_by"]),
                          str(len(row["models"])), (row["git"].get("commit") or "-")[:10],
                          _escape(row["message"] or ""))
        _console().print(table)

    emit(state, state.yard.protection.snapshots.list(), render)


@snapshot_group.command("show")
@click.argument("tag")
@command_options
def snapshot_show(state: State, tag: str) -> None:
    """Every alias and stage holder a snapshot recorded."""
    emit(state, state.yard.protection.snapshots.show(tag), lambda d: _render_snapshot(state, d))


def _render_snapshot(state: State, data: dict[str, Any], created: bool = False) -> None:
    from rich.table import Table

    console = _console()
    head = "created snapshot" if created else "snapshot"
    console.print(f"{head} [bold]{_escape(data['tag'])}[/bold] at {data['created_at']} by "
                  f"{_escape(data['created_by'])}"
                  + (f": {_escape(data['message'])}" if data["message"] else ""))
    table = Table("model", "alias / stage", "version", "manifest")
    for name, entry in sorted(data["models"].items()):
        for alias, holder in sorted(entry["aliases"].items()):
            table.add_row(_escape(name), alias, _fmt(state, holder["semver"], holder["version"]),
                          (holder.get("manifest_sha256") or "-")[:12])
    console.print(table)
    if data["git"].get("commit"):
        console.print(f"git {data['git']['commit'][:10]} ({data['git'].get('branch')}), "
                      f"{len(data['data'])} DVC output(s)")


@snapshot_group.command("diff")
@click.argument("tag")
@click.argument("other", required=False)
@command_options
def snapshot_diff(state: State, tag: str, other: str | None) -> None:
    """What moved from snapshot TAG to OTHER (default: now)."""
    def render(data: dict[str, Any]) -> None:
        console = _console()
        for move in data["moved"]:
            before = _side(state, move["before"])
            after = _side(state, move["after"])
            console.print(f"[yellow]moved[/yellow]   {_escape(move['name'])} {move['alias']}: "
                          f"{before} -> {after}")
        for item in data["added"]:
            console.print(f"[green]added[/green]   {_escape(item['name'])} "
                          f"{_fmt(state, item['semver'], item['version'])}")
        for item in data["deleted"]:
            console.print(f"[red]deleted[/red] {_escape(item['name'])} "
                          f"{_fmt(state, item['semver'], item['version'])}")
        for name in data["models_added"]:
            console.print(f"[green]new model[/green] {_escape(name)}")
        for name in data["models_removed"]:
            console.print(f"[red]model gone[/red] {_escape(name)}")
        if not any(data[k] for k in ("moved", "added", "deleted", "models_added",
                                     "models_removed")):
            console.print(f"no change since {_escape(tag)}")

    emit(state, state.yard.protection.snapshots.diff(tag, other), render)


def _side(state: State, holder: dict[str, Any]) -> str:
    return _fmt(state, holder.get("semver"), holder["version"]) if holder else "(none)"


@snapshot_group.command("restore")
@click.argument("tag")
@click.option("--dry-run", is_flag=True, help="Show the moves; change nothing.")
@click.option("--data", is_flag=True, help="Also put DVC-tracked data back (clean workspace).")
@click.option("--yes", is_flag=True, help="Apply without asking.")
@command_options
def snapshot_restore(state: State, tag: str, dry_run: bool, data: bool, yes: bool) -> None:
    """Every alias and stage back where snapshot TAG had it (each move audited).

    Without --yes the plan is shown and, at a terminal, you are asked to confirm.
    """
    if yes and not dry_run:  # nothing to confirm: one pass, no plan read first
        result = state.yard.protection.snapshots.restore(tag, data=data)
    else:
        plan = state.yard.protection.snapshots.restore(tag, dry_run=True, data=data)
        apply = not dry_run and not state.json and sys.stdin.isatty() and _confirm(state, plan)
        result = state.yard.protection.snapshots.restore(tag, data=data) if apply else plan

    def render(d: dict[str, Any]) -> None:
        console = _console()
        verb = "moved" if not d["dry_run"] else "would move"
        for item in d["restored_versions"]:
            what = "restored" if not d["dry_run"] else "would restore"
            console.print(f"{what} {_escape(item['name'])} v{item['semver']}")
        for move in d["moves"]:
            said = _MOVE_VERBS.get(move["status"], verb)
            if move["status"] == "planned" and move["event"] is not None:
                said = "would finish"  # recorded by an earlier run, MLflow not following it
            recorded = (f" (recorded by event {move['event']} of an earlier run)"
                        if move["status"] == "finished" or said == "would finish" else "")
            if move["status"] in ("undone", "not undone"):
                recorded = f" (event {move['event']})"
            console.print(f"{said} {_escape(move['name'])} {move['kind']} {move['alias']}: "
                          f"{_hash(move['from_version'])} -> {_hash(move['to_version'])}"
                          f"{recorded}")
        for item in d["data"]:
            console.print(f"{'restored' if not d['dry_run'] else 'would restore'} data "
                          f"{_escape(item['path'])} -> md5 {item['md5'][:12]}")
        console.print(f"{len(d['moves'])} move(s), {d['unchanged']} alias(es) already as "
                      f"recorded in {_escape(tag)}")
        if d["dry_run"] and not dry_run:
            console.print("[yellow]plan only[/yellow]: pass --yes to apply")

    emit(state, result, render)
    if result.stopped is not None:
        if state.json:
            raise SystemExit(result.stopped_code)
        # A part failed: one line saying what became of every move, and what finishes it.
        fail(_escape(f"snapshot restore stopped: {result.stopped}; "
                     f"{result.count('applied') + result.count('finished')} move(s) applied, "
                     f"{result.count('undone')} undone, {result.count('not undone')} could "
                     f"not be undone, {result.count('not applied')} not applied; "
                     f"{result.todo}"), result.stopped_code)


_MOVE_VERBS = {"applied": "moved", "finished": "finished", "undone": "undone",
               "not undone": "NOT undone", "not applied": "not moved",
               "not audited": "moved, not audited:"}


def _hash(version: int | None) -> str:
    return f"#{version}" if version is not None else "(none)"


def _confirm(state: State, plan: Any) -> bool:
    if not plan.moves and not plan.data and not plan.restored_versions:
        return False
    _console().print(f"{len(plan.moves)} move(s) planned")
    return bool(click.confirm("apply?", default=False))
