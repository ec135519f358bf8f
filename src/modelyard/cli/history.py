"""``history``: a model's audit trail, or with ``--access`` its access log."""

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


@main.command("history")
@click.argument("name")
@click.option("--version", "version", default=None, help="Only events about this version.")
@click.option("--verify", is_flag=True, help="Check the hash chain, its two anchors, the "
              "signatures (audit_key) and that every stage holder is audited; exit non-zero "
              "if not.")
@click.option("--access", "access", is_flag=True,
              help="Show the access log (who loaded which version) instead.")
@click.option("--sign-existing", "sign_existing", is_flag=True,
              help="Bring a trail written before audit_key was set under the key: check it, "
              "then append one signed 'seal' event (needs MANAGE; audited).")
@command_options
def history_cmd(state: State, name: str, version: str | None, verify: bool,
                access: bool, sign_existing: bool) -> None:
    """Show a model's audit trail: who changed what, when, and why.

    \b
    Examples:
      modelyard history churn
      modelyard history churn --version v1.2.0
      modelyard history churn --verify
      modelyard history churn --access --json
      MODELYARD_AUDIT_KEY=... modelyard history churn --sign-existing
    """
    if sign_existing:
        event = state.yard.governance.seal_trail(name)
        emit(state, event, lambda e: _console().print(
            f"{_escape(name)}: events 1-{e['seq'] - 1} sealed under the audit key by event "
            f"{e['seq']}"))
        return
    if access:
        _access_log(state, name)
        return
    events = state.yard.history(name, version, verify=verify)  # reads the vault if it must

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
            signed = " and signed" if state.yard.settings.audit_key is not None else ""
            console.print(f"[green]ok[/green] {len(data)} event(s), hash chain intact{signed}, "
                          "every stage holder audited")

    emit(state, events, render)


def _access_log(state: State, name: str) -> None:
    events = state.yard.governance.access_log(name)

    def render(data: list[dict[str, Any]]) -> None:
        from rich.table import Table

        if not data:
            _console().print(f"No loads of {_escape(name)} recorded.")
            return
        table = Table("when", "who", "identity", "host", "version", "purpose")
        for event in data:
            table.add_row(event["when"], _escape(event["who"]), event["identity"],
                          _escape(event["host"]),
                          _fmt(state, event.get("semver"), event.get("version")),
                          event["purpose"])
        _console().print(table)

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
