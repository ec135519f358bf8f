"""``init``: scaffold a DVC project (pipeline, params, policy, CI) for a model."""

from __future__ import annotations

from pathlib import Path

import click

from modelyard.cli.shell import (
    State,
    _console,
    command_options,
    emit,
    main,
)


@main.command("init")
@click.argument("directory", type=click.Path(path_type=Path), default=".")
@click.option("--name", default="churn", show_default=True, help="Model name for the project.")
@click.option("--force", is_flag=True, help="Overwrite files the template also has.")
@command_options
def init_cmd(state: State, directory: Path, name: str, force: bool) -> None:
    """Scaffold a project: DVC pipeline (prepare, train, evaluate), params, policy, CI.

    \b
    Examples:
      modelyard init churn-model && cd churn-model && dvc repro
      modelyard init . --name fraud
    """
    from modelyard.project.scaffold import init_project

    created = init_project(directory, name=name, force=force)
    emit(state, {"dir": str(directory), "files": [str(p) for p in created]}, lambda _: (
        _console().print(f"created {len(created)} files in {directory}; next: "
                         f"cd {directory} && dvc repro")))
