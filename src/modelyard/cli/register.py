"""New versions: ``register`` (a saved MLflow model folder or an MLflow URI) and ``adopt``
(versions plain MLflow registered), each given a semver and a manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from modelyard.cli.shell import (
    State,
    YardError_,
    _console,
    _escape,
    _number,
    _pairs,
    command_options,
    emit,
    main,
)


@main.command("register")
@click.argument("source")
@click.option("--name", "-n", required=True, help="Registered model name.")
@click.option("--data", "-d", multiple=True, help="Training data path (repeatable).")
@click.option("--metric", "-m", multiple=True, help="METRIC=VALUE (repeatable).")
@click.option("--param", "-p", multiple=True, help="PARAM=VALUE (repeatable).")
@click.option("--tag", "-t", multiple=True, help="KEY=VALUE (repeatable).")
@click.option("--description", default=None)
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]), default=None)
@click.option("--version", "explicit", default=None, help="Explicit semver, e.g. 2.0.0.")
@click.option("--follow-links", is_flag=True,
              help="Copy the content a symlink pointing outside the model folder leads to "
              "(refused by default).")
@command_options
def register_cmd(
    state: State, source: str, name: str, data: tuple[str, ...], metric: tuple[str, ...],
    param: tuple[str, ...], tag: tuple[str, ...], description: str | None, bump: str | None,
    explicit: str | None, follow_links: bool,
) -> None:
    """Register a saved MLflow model directory or an MLflow URI (models:/m-..., runs:/...).

    \b
    Examples:
      modelyard register ./model --name churn --data data/train.csv -m accuracy=0.91
      modelyard register ./model --name churn --follow-links
      modelyard register models:/m-0123abcd --name churn
    """
    metrics = {k: _number(k, v) for k, v in _pairs(metric, "--metric").items()}
    if "://" not in source and ":/" not in source:
        mv = state.yard.register_directory(
            Path(source), name, metrics=metrics, params=_pairs(param, "--param"),
            data=list(data), description=description, tags=_pairs(tag, "--tag"), bump=bump,
            version=explicit, follow_links=follow_links,
        )
    else:
        if follow_links:
            raise YardError_("--follow-links applies to a model folder, not to an MLflow URI")
        mv = state.yard.register_uri(
            source, name, data=list(data), description=description, tags=_pairs(tag, "--tag"),
            bump=bump, version=explicit,
        )
    fmt = state.yard.settings.format_version
    emit(state, mv.to_dict(), lambda _: _console().print(
        f"registered [bold]{mv.name}[/bold] {fmt(mv.semver or '?')} (MLflow version "
        f"{mv.version}; "
        f"{mv.bump}: {_escape(mv.bump_reason or '')})"))


@main.command("adopt")
@click.argument("name")
@command_options
def adopt_cmd(state: State, name: str) -> None:
    """Bring versions registered by plain MLflow under modelyard (semver and manifest).

    Versions are taken in MLflow version order: the first becomes 1.0.0, later ones are
    bumped by the same rules as registration. Already managed versions are left alone.

    \b
    Examples:
      modelyard adopt churn
      modelyard adopt churn --json
    """
    adopted = state.yard.adopt(name)
    fmt = state.yard.settings.format_version

    def render(items: list[dict[str, Any]]) -> None:
        from rich.table import Table

        console = _console()
        if not items:
            console.print(f"{name}: nothing to adopt (every version is already managed)",
                          markup=False)
            return
        table = Table("MLflow version", "semver", "stage", "bump", "reason")
        for item in items:
            table.add_row(str(item["version"]), fmt(item["semver"]), item["stage"],
                          item["bump"] or "-", _escape(item["bump_reason"] or ""))
        console.print(table)

    emit(state, [mv.to_dict() for mv in adopted], render)
