"""CLI commands for the lifecycle verbs."""

from __future__ import annotations

from typing import Any

import click

from modelyard.cli import State, _console, _escape, _target, command_options, emit, main
from modelyard.errors import InvalidInput

STAGE_CHOICES = ["staging", "production", "archived", "none", "development"]


def _fmt(state: State, semver: str | None, version: int | None) -> str:
    if semver:
        return f"{state.yard.settings.format_version(semver)} (#{version})"
    return f"#{version}" if version is not None else "-"


def _render_change(state: State, data: dict[str, Any]) -> None:
    console = _console()
    label = f"[bold]{_escape(data['name'])}[/bold] {_fmt(state, data['semver'], data['version'])}"
    if data["status"] == "pending":
        console.print(
            f"{label}: promotion to {data['to']} [yellow]pending approval[/yellow] "
            f"(request {data['request_id']}); another user runs "
            f"`modelyard approve {data['request_id']}`"
        )
    else:
        verb = "rolled back to" if data["status"] == "rolled back" else "promoted"
        line = f"{label}: {data['from']} -> [green]{data['to']}[/green] ({verb})"
        if data["replaced"] is not None:
            line += f"; replaced #{data['replaced']}"
        console.print(line)
    for gate in data["gates"]:
        mark = "[green]pass[/green]" if gate["passed"] else "[red]FAIL[/red]"
        console.print(f"  gate {mark} {_escape(gate['gate'])}: {_escape(gate['detail'])}")
    for hook in data.get("webhooks") or []:
        status = "[green]sent[/green]" if hook["ok"] else f"[red]failed[/red] ({hook['error']})"
        console.print(f"  webhook {_escape(hook['url'])}: {status}")


@main.command("promote")
@click.argument("target")
@click.option("--to", "stage", required=True, help="staging, production, archived or none.")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@click.option("--force", is_flag=True, help="Skip staging on the way to production (needs "
              "--reason).")
@click.option("--gate", "gates", multiple=True,
              help="Extra gate: 'accuracy >= 0.85', 'KEY=VALUE' or 'beat accuracy by 0.01' "
              "(repeatable).")
@command_options
def promote_cmd(state: State, target: str, stage: str, reason: str | None, force: bool,
                gates: tuple[str, ...]) -> None:
    """Move a version into a stage; its previous holder moves out.

    Production needs the version to be in staging first (or --force with --reason), and
    every gate of the policy to pass. With production_approval_required a request is filed
    for another user to approve.

    \b
    Examples:
      modelyard promote churn@v1.2.0 --to staging
      modelyard promote churn@staging --to production --reason "beats v1.1.0"
      modelyard promote churn@7 --to production --force --reason "hotfix" --gate "auc >= 0.8"
      modelyard promote churn@v1.0.0 --to archived
    """
    name, ref = _target(target, "")
    if not ref:
        raise InvalidInput(f"name the version to promote: {name}@REF (e.g. {name}@v1.2.0)")
    change = state.yard.promote(name, ref, to=stage, reason=reason, force=force,
                                gates=list(gates))
    emit(state, change.to_dict(), lambda d: _render_change(state, d))


@main.command("approve")
@click.argument("request_id")
@click.option("--reason", default=None, help="Comment kept in the audit trail.")
@command_options
def approve_cmd(state: State, request_id: str, reason: str | None) -> None:
    """Approve a pending promotion (not by its requester): gates are checked again.

    \b
    Examples:
      modelyard requests churn
      modelyard approve 3f9c0a1b2d --reason "reviewed the holdout report"
    """
    change = state.yard.approve(request_id, reason=reason)
    emit(state, change.to_dict(), lambda d: _render_change(state, d))


@main.command("reject")
@click.argument("request_id")
@click.option("--reason", required=True, help="Why (kept in the audit trail).")
@command_options
def reject_cmd(state: State, request_id: str, reason: str) -> None:
    """Close a pending promotion without promoting.

    \b
    Examples:
      modelyard reject 3f9c0a1b2d --reason "fails on the March data"
    """
    data = state.yard.reject(request_id, reason=reason)
    emit(state, data, lambda d: _console().print(
        f"request {d['id']} for {_escape(d['name'])} #{d['version']} [red]rejected[/red] "
        f"by {_escape(d['rejected_by'])}: {_escape(d['reason'])}"))


@main.command("requests")
@click.argument("name", required=False)
@command_options
def requests_cmd(state: State, name: str | None) -> None:
    """List open promotion requests.

    \b
    Examples:
      modelyard requests
      modelyard requests churn --json
    """
    rows = state.yard.requests(name)

    def render(data: list[dict[str, Any]]) -> None:
        console = _console()
        if not data:
            console.print("No open requests.")
            return
        for row in data:
            console.print(
                f"[bold]{row['id']}[/bold]  {_escape(row['name'])} "
                f"{_fmt(state, row.get('semver'), row['version'])} -> {row['stage']}  "
                f"requested by {_escape(row['requested_by'])} at {row['requested_at']}: "
                f"{_escape(row.get('reason') or '-')}"
            )

    emit(state, rows, render)


@main.command("rollback")
@click.argument("name")
@click.option("--stage", default="production", type=click.Choice(["production", "staging"]),
              show_default=True)
@click.option("--to", "to", default=None, help="Version to put back (default: the previous "
              "holder, from the audit trail).")
@click.option("--reason", default=None, help="Why (kept in the audit trail).")
@command_options
def rollback_cmd(state: State, name: str, stage: str, to: str | None, reason: str | None
                 ) -> None:
    """Put back the previous holder of a stage; the current one is archived and marked.

    \b
    Examples:
      modelyard rollback churn --reason "latency regression"
      modelyard rollback churn --to v1.1.0
      modelyard rollback churn --stage staging
    """
    change = state.yard.rollback(name, stage, to, reason=reason)
    emit(state, change.to_dict(), lambda d: _render_change(state, d))


@main.command("alias")
@click.argument("target")
@click.argument("alias")
@click.option("--delete", is_flag=True, help="Remove the alias instead.")
@command_options
def alias_cmd(state: State, target: str, alias: str, delete: bool) -> None:
    """Point a user alias at a version, or remove it (stages move only with promote).

    \b
    Examples:
      modelyard alias churn@v1.2.0 champion
      modelyard alias churn champion --delete
    """
    name, ref = _target(target, "")
    if delete:
        data = state.yard.remove_alias(name, alias)
        emit(state, data, lambda d: _console().print(
            f"removed alias {_escape(d['alias'])} from {_escape(d['name'])} #{d['version']}"))
        return
    if not ref:
        raise InvalidInput(f"name the version: {name}@REF {alias}")
    data = state.yard.set_alias(name, ref, alias)
    emit(state, data, lambda d: _console().print(
        f"{_escape(d['name'])}@{_escape(d['alias'])} -> "
        f"{_fmt(state, d['semver'], d['version'])}"))


@main.command("tag")
@click.argument("target")
@click.argument("pair", required=False)
@click.option("--delete", "delete_key", default=None, metavar="KEY", help="Remove a tag.")
@command_options
def tag_cmd(state: State, target: str, pair: str | None, delete_key: str | None) -> None:
    """Set (KEY=VALUE) or remove (--delete KEY) a tag on a version.

    The modelyard. namespace is reserved.

    \b
    Examples:
      modelyard tag churn@v1.2.0 validation_status=passed
      modelyard tag churn@v1.2.0 --delete validation_status
    """
    name, ref = _target(target)
    if delete_key and pair:
        raise InvalidInput("give KEY=VALUE or --delete KEY, not both")
    if delete_key:
        data = state.yard.remove_tag(name, ref, delete_key)
        emit(state, data, lambda d: _console().print(
            f"removed tag {_escape(d['key'])} from {_escape(d['name'])} #{d['version']}"))
        return
    key, sep, value = (pair or "").partition("=")
    if not sep or not key:
        raise InvalidInput(f"expected KEY=VALUE, got {pair or ''!r}")
    data = state.yard.set_tag(name, ref, key, value)
    emit(state, data, lambda d: _console().print(
        f"{_escape(d['name'])} {_fmt(state, d['semver'], d['version'])}: "
        f"{_escape(d['key'])}={_escape(d['value'])}"))


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


@main.command("history")
@click.argument("name")
@click.option("--version", "version", default=None, help="Only events about this version.")
@click.option("--verify", is_flag=True, help="Check the hash chain; exit non-zero if broken.")
@command_options
def history_cmd(state: State, name: str, version: str | None, verify: bool) -> None:
    """Show a model's audit trail: who changed what, when, and why.

    \b
    Examples:
      modelyard history churn
      modelyard history churn --version v1.2.0
      modelyard history churn --verify
    """
    events = state.yard.history(name, version, verify=verify)

    def render(data: list[dict[str, Any]]) -> None:
        from rich.table import Table

        console = _console()
        if not data:
            console.print(f"No audit events for {_escape(name)}.")
        else:
            table = Table("seq", "when", "who", "action", "version", "from", "to", "reason")
            for event in data:
                table.add_row(
                    str(event["seq"]), event["when"], _escape(event["who"]), event["action"],
                    _fmt(state, event.get("semver"), event.get("version")),
                    event.get("from") or "-", event.get("to") or "-",
                    _escape(event.get("reason") or _summary(event)),
                )
            console.print(table)
        if verify:
            console.print(f"[green]ok[/green] {len(data)} event(s), hash chain intact")

    emit(state, events, render)


def _summary(event: dict[str, Any]) -> str:
    detail = event.get("detail") or {}
    if event["action"] == "alias":
        return f"{detail.get('op')} alias {detail.get('alias')}"
    if event["action"] == "tag":
        return f"{detail.get('op')} tag {detail.get('key')}"
    if event["action"] == "cleanup":
        moved = detail.get("deleted") or detail.get("archived") or []
        return f"{'deleted' if 'deleted' in detail else 'archived'} {moved}"
    return "-"
