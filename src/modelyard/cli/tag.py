"""``tag``: set or remove a tag on a version."""

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
