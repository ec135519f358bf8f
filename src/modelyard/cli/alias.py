"""``alias``: point a user alias at a version, or remove it."""

from __future__ import annotations

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
