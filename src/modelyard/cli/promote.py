"""Stage moves: ``promote``, the approval flow (``requests``, ``approve``, ``reject``) and
``rollback``, and the one way a stage change is printed."""

from __future__ import annotations

from typing import Any

import click

from modelyard.cli.render import _fmt
from modelyard.cli.shell import (
    State,
    _console,
    _escape,
    _target,
    command_options,
    emit,
    main,
)
from modelyard.errors import InvalidInput


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
    state.yard.prepare_vault()  # the audit event is written after the registry calls
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
    state.yard.prepare_vault()
    change = state.yard.rollback(name, stage, to, reason=reason)
    emit(state, change.to_dict(), lambda d: _render_change(state, d))


def _render_change(state: State, data: dict[str, Any]) -> None:
    from modelyard.lifecycle.gates import describe

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
        if data.get("release_tag"):
            line += f"; git tag {_escape(data['release_tag'])}"
        console.print(line)
    for gate in data["gates"]:
        colour = "green" if gate["passed"] else "red"
        console.print(f"  [{colour}]{_escape(describe(gate))}[/{colour}]")
    for hook in data.get("webhooks") or []:
        status = "[green]sent[/green]" if hook["ok"] else f"[red]failed[/red] ({hook['error']})"
        console.print(f"  webhook {_escape(hook['url'])}: {status}")
